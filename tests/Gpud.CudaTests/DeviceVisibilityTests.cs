using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Gpud.Engine.Compute;

namespace Gpud.CudaTests;

/// <summary>
/// Slot assignment under CUDA_VISIBLE_DEVICES, through the real daemon (the gpud program beside this one in the GPU
/// bundle): what it lists at /v1/system, which board NVML reads for each cuda:N, and where fine-tuning jobs run.
/// </summary>
public sealed class DeviceVisibilityTests
{
    [Fact]
    public async Task Cuda_visible_devices_selects_and_orders_the_devices_gpud_uses()
    {
        Gpu.Require();
        // None visible: CPU only, and jobs run there.
        var none = await Daemon.StartAsync("");
        Assert.False(none.System.GetProperty("cuda_available").GetBoolean());
        Assert.Equal(["cpu"], Ids(none.System));
        Assert.Contains("Fine-tuning jobs run on: cpu", none.Log, StringComparison.Ordinal);

        var nvml = Nvml.TryOpen();
        Assert.NotNull(nvml);
        var boards = nvml.Sample();
        Assert.NotEmpty(boards);
        Assert.All(boards, b => Assert.StartsWith("GPU-", b.Uuid, StringComparison.Ordinal));

        // Each board alone, by UUID: it becomes cuda:0, and NVML's reading for cuda:0 is that board's.
        foreach (var board in boards)
        {
            var one = await Daemon.StartAsync(board.Uuid!);
            Assert.Equal(["cuda:0", "cpu"], Ids(one.System));
            Assert.Equal(board.Uuid, Device(one.System, "cuda:0").GetProperty("uuid").GetString());
            Assert.Equal(board.MemoryTotalBytes, Device(one.System, "cuda:0").GetProperty("total_memory_bytes").GetInt64());
            Assert.Contains("Fine-tuning jobs run on: cuda:0", one.Log, StringComparison.Ordinal);
        }

        // Several boards in reverse order: cuda:0 is the last one named first, and every board gets a job slot.
        if (boards.Count >= 2)
        {
            var reversed = await Daemon.StartAsync(string.Join(',', boards.Select(b => b.Uuid).Reverse()));
            var ids = Ids(reversed.System);
            Assert.Equal(boards.Count + 1, ids.Count);
            for (var i = 0; i < boards.Count; i++)
                Assert.Equal(boards[^(i + 1)].Uuid, Device(reversed.System, $"cuda:{i}").GetProperty("uuid").GetString());
            Assert.Contains("Fine-tuning jobs run on: " + string.Join(", ", Enumerable.Range(0, boards.Count).Select(i => $"cuda:{i}")), reversed.Log, StringComparison.Ordinal);
        }
    }

    private static List<string> Ids(JsonElement system) =>
        system.GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("id").GetString()!).ToList();

    private static JsonElement Device(JsonElement system, string id) =>
        system.GetProperty("devices").EnumerateArray().Single(d => d.GetProperty("id").GetString() == id);

    private sealed record Daemon(JsonElement System, string Log)
    {
        public static async Task<Daemon> StartAsync(string visibleDevices)
        {
            var program = Path.Combine(AppContext.BaseDirectory, "gpud");
            Assert.True(File.Exists(program), $"{program} not found: this test runs from the GPU bundle (scripts/gpu/pack)");
            var data = Directory.CreateTempSubdirectory("gpud-cuda-daemon-").FullName;
            var port = FreePort();
            var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
            start.ArgumentList.Add($"--urls=http://127.0.0.1:{port}");
            start.ArgumentList.Add($"--Gpud:DataDir={data}");
            start.Environment["CUDA_VISIBLE_DEVICES"] = visibleDevices;
            start.Environment["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID";
            var log = new StringBuilder();
            using var process = Process.Start(start)!;
            process.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            try
            {
                using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
                var deadline = DateTime.UtcNow.AddSeconds(90);
                while (true)
                {
                    Assert.False(process.HasExited, $"gpud exited early:\n{log}");
                    Assert.True(DateTime.UtcNow < deadline, $"gpud (CUDA_VISIBLE_DEVICES={visibleDevices}) not ready in 90 s:\n{log}");
                    try
                    {
                        using var ready = await http.GetAsync(new Uri("/readyz", UriKind.Relative));
                        if (ready.StatusCode == HttpStatusCode.OK) break;
                    }
                    catch (HttpRequestException)
                    {
                    }
                    await Task.Delay(250);
                }
                var system = JsonDocument.Parse(await http.GetStringAsync(new Uri("/v1/system", UriKind.Relative))).RootElement.Clone();
                lock (log) return new Daemon(system, log.ToString());
            }
            finally
            {
                process.Kill(entireProcessTree: true);
                await process.WaitForExitAsync();
                Directory.Delete(data, recursive: true);
            }
        }

        private static int FreePort()
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
    }
}
