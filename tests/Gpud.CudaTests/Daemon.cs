using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Gpud.Tests.Infrastructure;

namespace Gpud.CudaTests;

/// <summary>
/// The real daemon (<see cref="DaemonProcess"/>: from the GPU bundle, the published gpud beside this program) with a
/// data directory of its own, ready once libtorch has loaded, and the few calls the lane makes: device visibility is
/// fixed at CUDA initialisation, and a job's failure must leave the daemon serving.
/// </summary>
internal sealed class Daemon : IDisposable
{
    private readonly DaemonProcess _process;
    private readonly string _data;

    private Daemon(DaemonProcess process, string data)
    {
        _process = process;
        _data = data;
        Client = process.Client();
    }

    public HttpClient Client { get; }

    public string Log => string.Join('\n', _process.Output);

    /// <summary>Another program of the bundle (gpud-bench), next to this test program.</summary>
    public static string Program(string name)
    {
        var path = Path.Combine(AppContext.BaseDirectory, name);
        Assert.True(File.Exists(path), $"{path} not found: this test runs from the GPU bundle (scripts/gpu/pack, scripts/gpu/run test)");
        return path;
    }

    public static async Task<Daemon> StartAsync(IReadOnlyDictionary<string, string>? environment = null, params string[] arguments)
    {
        var data = Directory.CreateTempSubdirectory("gpud-cuda-daemon-").FullName;
        var variables = new Dictionary<string, string>(environment ?? new Dictionary<string, string>()) { ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID" };
        var daemon = new Daemon(await DaemonProcess.StartAsync(data, variables, arguments), data);
        for (var deadline = DateTime.UtcNow.AddSeconds(120); ; await Task.Delay(250))
        {
            using var ready = await daemon.Client.GetAsync(new Uri("/readyz", UriKind.Relative));
            if (ready.StatusCode == HttpStatusCode.OK) return daemon;
            if (DateTime.UtcNow > deadline)
            {
                var log = daemon.Log;
                daemon.Dispose();
                Assert.Fail($"gpud was not ready in 120 s:\n{log}");
            }
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

    public void Dispose()
    {
        _process.Dispose();
        Client.Dispose();
        Directory.Delete(_data, recursive: true);
    }
}
