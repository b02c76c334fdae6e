using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Gpud.CudaTests;

/// <summary>
/// The real daemon, started from the program beside this one in the GPU bundle (the lane's tests that need a process of
/// their own: device visibility is fixed at CUDA initialisation, and a job's failure must leave the daemon serving).
/// </summary>
internal sealed class Daemon : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _log;
    private readonly string _data;

    private Daemon(Process process, StringBuilder log, string data, HttpClient client)
    {
        _process = process;
        _log = log;
        _data = data;
        Client = client;
    }

    public HttpClient Client { get; }

    public string Log
    {
        get
        {
            lock (_log) return _log.ToString();
        }
    }

    /// <summary>A program of the bundle (gpud, gpud-bench), next to this test program.</summary>
    public static string Program(string name)
    {
        var path = Path.Combine(AppContext.BaseDirectory, name);
        Assert.True(File.Exists(path), $"{path} not found: this test runs from the GPU bundle (scripts/gpu/pack, scripts/gpu/run test)");
        return path;
    }

    public static async Task<Daemon> StartAsync(IReadOnlyDictionary<string, string>? environment = null, params string[] arguments)
    {
        var data = Directory.CreateTempSubdirectory("gpud-cuda-daemon-").FullName;
        var port = FreePort();
        var start = new ProcessStartInfo(Program("gpud")) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add($"--urls=http://127.0.0.1:{port}");
        start.ArgumentList.Add($"--Gpud:DataDir={data}");
        foreach (var argument in arguments) start.ArgumentList.Add(argument);
        start.Environment["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID";
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        var log = new StringBuilder();
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var daemon = new Daemon(process, log, data, new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(5) });
        var deadline = DateTime.UtcNow.AddSeconds(120);
        while (true)
        {
            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                var output = daemon.Log;
                await daemon.DisposeAsync();
                Assert.Fail($"gpud {(process.HasExited ? "exited" : "was not ready in 120 s")}:\n{output}");
            }
            try
            {
                using var ready = await daemon.Client.GetAsync(new Uri("/readyz", UriKind.Relative));
                if (ready.StatusCode == HttpStatusCode.OK) return daemon;
            }
            catch (HttpRequestException)
            {
            }
            await Task.Delay(250);
        }
    }

    public async Task<JsonElement> GetAsync(string path) =>
        JsonDocument.Parse(await Client.GetStringAsync(new Uri(path, UriKind.Relative))).RootElement.Clone();

    public async Task<JsonElement> PostAsync(string path, object body)
    {
        using var response = await Client.PostAsJsonAsync(new Uri(path, UriKind.Relative), body);
        var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
        Assert.True(response.IsSuccessStatusCode, $"POST {path}: {json}");
        return json;
    }

    public async Task<string> UploadAsync(string jsonl)
    {
        using var form = new MultipartFormDataContent
        {
            { new StringContent("fine-tune"), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(jsonl)), "file", "train.jsonl" },
        };
        using var response = await Client.PostAsync(new Uri("/v1/files", UriKind.Relative), form);
        var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.True(response.IsSuccessStatusCode, $"upload: {json}");
        return json.GetProperty("id").GetString()!;
    }

    /// <summary>Polls a job until it ends (succeeded, failed or cancelled).</summary>
    public async Task<JsonElement> WaitForJobAsync(string id, int timeoutSeconds = 300)
    {
        var deadline = DateTime.UtcNow.AddSeconds(timeoutSeconds);
        while (true)
        {
            var job = await GetAsync($"/v1/fine_tuning/jobs/{id}");
            if (job.GetProperty("status").GetString() is "succeeded" or "failed" or "cancelled") return job;
            Assert.True(DateTime.UtcNow < deadline, $"job {id} still {job.GetProperty("status")} after {timeoutSeconds} s:\n{Log}");
            await Task.Delay(500);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        _process.Dispose();
        Client.Dispose();
        Directory.Delete(_data, recursive: true);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
