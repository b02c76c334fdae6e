using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using Gpud.Engine.Lora;

namespace Gpud.Bench;

/// <summary>
/// <c>gpud-bench adapters</c> writes K synthetic adapters for a model; <c>gpud-bench serve</c> drives a running gpud
/// with N concurrent streamed completions spread round-robin over the given models and prints throughput, time to first
/// token and inter-token latency percentiles as key=value lines.
/// </summary>
internal static class ServeBenchmark
{
    public static int WriteAdapters(Arguments arguments)
    {
        var model = arguments.Get("model", "");
        var output = arguments.Get("out", "");
        var count = arguments.Int("count", 8);
        var rank = arguments.Int("rank", 16);
        for (var i = 0; i < count; i++)
            SyntheticAdapter.Write(Path.Combine(output, $"adapter-{i}"), model, seed: i + 1, new LoraSettings(rank, 2 * rank), ["all-linear"], strength: 0.05);
        Console.WriteLine(FormattableString.Invariant($"adapters={count} rank={rank} out={output}"));
        return 0;
    }

    public static async Task<int> RunAsync(Arguments arguments)
    {
        var url = arguments.Get("url", "http://127.0.0.1:8080");
        var models = arguments.Get("models", "gpud-tiny").Split(',');
        var concurrency = arguments.Int("concurrency", 16);
        var requests = arguments.Int("requests", concurrency * 4);
        var maxTokens = arguments.Int("max-tokens", 64);
        var prompt = arguments.Get("prompt", "Write a short story about a lighthouse keeper who");
        using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(30) };

        var ttft = new List<double>();
        var itl = new List<double>();
        long tokens = 0;
        var next = -1;
        var gate = new Lock();
        async Task Worker()
        {
            while (true)
            {
                var i = Interlocked.Increment(ref next);
                if (i >= requests) return;
                var body = new { model = models[i % models.Length], prompt, max_tokens = maxTokens, temperature = 0.8, seed = i, stream = true,
                    stream_options = new { include_usage = true } };
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = JsonContent.Create(body) };
                var start = Stopwatch.GetTimestamp();
                using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
                if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
                using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
                long last = 0;
                var mine = new List<double>();
                double first = double.NaN;
                var count = 0;
                while (await reader.ReadLineAsync() is { } line)
                {
                    if (!line.StartsWith("data: {", StringComparison.Ordinal)) continue;
                    using var chunk = JsonDocument.Parse(line[6..]);
                    if (chunk.RootElement.GetProperty("choices").GetArrayLength() == 0)
                    {
                        count = chunk.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32(); // the last chunk
                        continue;
                    }
                    var now = Stopwatch.GetTimestamp();
                    if (last == 0) first = Stopwatch.GetElapsedTime(start, now).TotalSeconds;
                    else mine.Add(Stopwatch.GetElapsedTime(last, now).TotalSeconds);
                    last = now;
                }
                lock (gate)
                {
                    ttft.Add(first);
                    itl.AddRange(mine);
                    tokens += count;
                }
            }
        }

        var wall = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(_ => Task.Run(Worker)));
        var seconds = wall.Elapsed.TotalSeconds;
        Console.WriteLine(FormattableString.Invariant($"models={models.Length} concurrency={concurrency} requests={requests} max_tokens={maxTokens}"));
        Console.WriteLine(FormattableString.Invariant($"generated_tokens={tokens} wall_seconds={seconds:F2}"));
        Console.WriteLine(FormattableString.Invariant($"throughput_tokens_per_second={tokens / seconds:F1}"));
        Console.WriteLine(FormattableString.Invariant($"ttft_p50_ms={Percentile(ttft, 50) * 1000:F1} ttft_p95_ms={Percentile(ttft, 95) * 1000:F1}"));
        Console.WriteLine(FormattableString.Invariant($"itl_p50_ms={Percentile(itl, 50) * 1000:F2} itl_p95_ms={Percentile(itl, 95) * 1000:F2} itl_p99_ms={Percentile(itl, 99) * 1000:F2}"));
        return 0;
    }

    private static double Percentile(List<double> values, double p)
    {
        if (values.Count == 0) return double.NaN;
        var sorted = values.Order().ToList();
        return sorted[Math.Clamp((int)Math.Ceiling(p / 100 * sorted.Count) - 1, 0, sorted.Count - 1)];
    }
}
