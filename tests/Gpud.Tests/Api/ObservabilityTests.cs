using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.RegularExpressions;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>
/// What a platform team plugs gpud into: its Prometheus, its Grafana, its log pipeline. The daemon runs as its own
/// process, as it does in production. Needs Prometheus' binaries (Debian package <c>prometheus</c>; .ci/run installs it).
/// </summary>
public sealed partial class ObservabilityTests
{
    [Fact]
    public async Task The_dashboard_queries_only_metrics_gpud_exports_promtool_accepts_them_and_prometheus_scrapes_them()
    {
        Assert.True(File.Exists("/usr/bin/promtool") && File.Exists("/usr/bin/prometheus"), "install Prometheus: apt-get install prometheus");
        using var dir = new TempDir();
        using var gpud = await DaemonProcess.StartAsync(dir["data"]);
        var client = gpud.Client();
        var file = await client.UploadTrainingFileAsync();
        var job = await client.WaitForJobAsync((await client.CreateJobAsync(file, new { n_epochs = 1, batch_size = 4 })).GetProperty("id").GetString()!);
        Assert.Equal("succeeded", job.Status());
        var completion = await client.PostAsJsonAsync("/v1/completions", new { model = job.GetProperty("fine_tuned_model").GetString(), prompt = "hi", max_tokens = 4 });
        Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/v1/models/no-such-model")).StatusCode);
        var tooSmall = await client.UploadTrainingFileAsync(Jobs.CapitalsJsonl(5)); // fails: fewer than 10 examples
        Assert.Equal("failed", (await client.WaitForJobAsync((await client.CreateJobAsync(tooSmall)).GetProperty("id").GetString()!)).Status());
        var line = JsonSerializer.Serialize(new { custom_id = "a", method = "POST", url = "/v1/completions", body = new { model = "gpud-tiny", prompt = "hi", max_tokens = 2 } });
        var batchFile = (await (await client.PostAsync("/v1/files", Requests.UploadForm(line + "\n", "batch"))).Json()).GetProperty("id").GetString();
        var batch = (await (await client.PostAsJsonAsync("/v1/batches", new { input_file_id = batchFile, endpoint = "/v1/completions", completion_window = "24h" })).Json()).GetProperty("id").GetString();
        for (var i = 0; i < 400 && (await (await client.GetAsync($"/v1/batches/{batch}")).Json()).GetProperty("status").GetString() != "completed"; i++) await Task.Delay(50);
        var metrics = await client.GetStringAsync("/metrics");

        // Every metric a panel queries is declared, and has samples unless it is GPU telemetry (no GPU here).
        var dashboard = JsonDocument.Parse(File.ReadAllText(Repo.File("deploy/grafana/dashboards/gpud.json"))).RootElement;
        var queries = dashboard.GetProperty("panels").EnumerateArray()
            .Where(p => p.TryGetProperty("targets", out _))
            .SelectMany(p => p.GetProperty("targets").EnumerateArray().Select(t => (Panel: p.GetProperty("title").GetString()!, Expr: t.GetProperty("expr").GetString()!)))
            .ToList();
        Assert.True(queries.Count >= 25, $"{queries.Count} queries");
        var declared = metrics.Split('\n').Where(l => l.StartsWith("# TYPE ", StringComparison.Ordinal)).Select(l => l.Split(' ')[2]).ToHashSet();
        var sampled = metrics.Split('\n').Where(l => l.Length > 0 && l[0] != '#').Select(l => SeriesName().Match(l).Value).ToHashSet();
        foreach (var (panel, expr) in queries)
        {
            var names = MetricName().Matches(expr).Select(m => m.Value).ToList();
            Assert.True(names.Count > 0, $"panel '{panel}' queries no gpud metric: {expr}");
            foreach (var name in names)
            {
                var family = HistogramSuffix().Replace(name, "");
                Assert.True(declared.Contains(name) || declared.Contains(family), $"panel '{panel}' queries {name}, which /metrics does not declare");
                if (!NoSamplesHere.Contains(name) && !name.StartsWith("gpud_gpu_", StringComparison.Ordinal))
                    Assert.True(sampled.Contains(name) || sampled.Contains(name + "_bucket") || sampled.Contains(name + "_count"),
                        $"panel '{panel}' queries {name}, which has no samples after a job, a completion and a batch");
            }
        }

        var (check, checkOutput) = await RunAsync("promtool", ["check", "metrics"], metrics);
        Assert.True(check == 0, $"promtool check metrics:\n{checkOutput}");

        // A real Prometheus server scrapes it.
        var prometheusPort = DaemonProcess.FreePort();
        File.WriteAllText(dir["prometheus.yml"], $$"""
            global: { scrape_interval: 1s }
            scrape_configs:
              - job_name: gpud
                static_configs: [{ targets: ["127.0.0.1:{{gpud.Port}}"] }]
            """);
        using var prometheus = Process.Start(new ProcessStartInfo("prometheus",
            [$"--config.file={dir["prometheus.yml"]}", $"--storage.tsdb.path={dir["tsdb"]}", $"--web.listen-address=127.0.0.1:{prometheusPort}"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        _ = prometheus.StandardOutput.ReadToEndAsync();
        var log = prometheus.StandardError.ReadToEndAsync();
        try
        {
            using var api = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{prometheusPort}") };
            string? scraped = null;
            for (var i = 0; i < 120 && scraped is null; i++)
            {
                await Task.Delay(500);
                try
                {
                    var result = (await api.GetFromJsonAsync<JsonElement>("/api/v1/query?query=" + Uri.EscapeDataString("gpud_fine_tuning_jobs{job=\"gpud\",status=\"succeeded\"}")))
                        .GetProperty("data").GetProperty("result");
                    if (result.GetArrayLength() > 0) scraped = result[0].GetProperty("value")[1].GetString();
                }
                catch (HttpRequestException)
                {
                }
            }
            Assert.True(scraped is not null, "Prometheus never stored a sample from gpud:\n" + (prometheus.HasExited ? await log : ""));
            Assert.Equal("1", scraped);
            var targets = await api.GetFromJsonAsync<JsonElement>("/api/v1/targets");
            Assert.Equal("up", targets.GetProperty("data").GetProperty("activeTargets")[0].GetProperty("health").GetString());
        }
        finally
        {
            prometheus.Kill(entireProcessTree: true);
            await prometheus.WaitForExitAsync();
        }
    }

    [Fact]
    public async Task Json_logs_carry_the_request_id_on_every_request_line_and_never_a_key_or_file_contents()
    {
        const string Key = "sk-canary-3d5e7f9a1b";
        const string WrongKey = "sk-wrong-8c6a4e2d0f";
        const string Content = "canary-answer-5f1e";
        using var dir = new TempDir();
        using var gpud = await DaemonProcess.StartAsync(dir["data"],
            "--Logging:Console:FormatterName=json", "--Logging:Console:FormatterOptions:IncludeScopes=true",
            "--Logging:LogLevel:Default=Debug", "--Logging:LogLevel:Microsoft.AspNetCore=Debug", $"--Gpud:ApiKeys:0={Key}");
        var client = gpud.Client(Key);
        var jsonl = Jobs.CapitalsJsonl().Replace("Paris", Content, StringComparison.Ordinal);
        var upload = await client.PostAsync("/v1/files", Requests.UploadForm(jsonl));
        Assert.Equal(HttpStatusCode.OK, upload.StatusCode);
        var fileId = (await upload.Json()).GetProperty("id").GetString()!;
        Assert.Contains(Content, await client.GetStringAsync($"/v1/files/{fileId}/content"));
        var refused = await gpud.Client(WrongKey).GetAsync("/v1/files");
        Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        var bad = await client.PostAsJsonAsync("/v1/completions", new { model = "gpud-tiny", prompt = Content, max_tokens = -1 });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        var requestIds = new[] { upload, refused, bad }.Select(r => r.Headers.GetValues("x-request-id").Single()).ToList();
        await Task.Delay(500); // let the last lines reach stdout

        var output = gpud.Output;
        Assert.DoesNotContain(output, l => l.Contains(Key, StringComparison.Ordinal) || l.Contains(WrongKey, StringComparison.Ordinal));
        Assert.DoesNotContain(output, l => l.Contains(Content, StringComparison.Ordinal));
        var entries = output.Select(l => JsonDocument.Parse(l).RootElement).ToList(); // every line is one JSON object
        foreach (var id in requestIds)
        {
            var lines = entries.Where(e => e.TryGetProperty("Scopes", out var scopes)
                && scopes.EnumerateArray().Any(s => s.ValueKind == JsonValueKind.Object && s.TryGetProperty("RequestId", out var r) && r.GetString() == id)).ToList();
            // The host's own "Request starting" and "Request finished" lines carry the id the client saw.
            Assert.Contains(lines, e => e.GetProperty("Message").GetString()!.StartsWith("Request starting", StringComparison.Ordinal));
            Assert.Contains(lines, e => e.GetProperty("Message").GetString()!.StartsWith("Request finished", StringComparison.Ordinal));
        }
    }

    /// <summary>Only a full waiting queue produces these (covered by InferenceApiTests' 429 test).</summary>
    private static readonly HashSet<string> NoSamplesHere = ["gpud_requests_rejected_total"];

    private static async Task<(int Exit, string Output)> RunAsync(string command, string[] arguments, string input)
    {
        using var process = Process.Start(new ProcessStartInfo(command, arguments)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardInput.WriteAsync(input);
        process.StandardInput.Close();
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout + await stderr);
    }

    [GeneratedRegex(@"\b(gpud|http|process|dotnet)_[a-z0-9_]+\b")]
    private static partial Regex MetricName();

    [GeneratedRegex(@"^[a-zA-Z_:][a-zA-Z0-9_:]*")]
    private static partial Regex SeriesName();

    [GeneratedRegex("_(bucket|sum|count)$")]
    private static partial Regex HistogramSuffix();
}
