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
        var none = await StartAsync("");
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
            var one = await StartAsync(board.Uuid!);
            Assert.Equal(["cuda:0", "cpu"], Ids(one.System));
            Assert.Equal(board.Uuid, Device(one.System, "cuda:0").GetProperty("uuid").GetString());
            Assert.Equal(board.MemoryTotalBytes, Device(one.System, "cuda:0").GetProperty("total_memory_bytes").GetInt64());
            Assert.Contains("Fine-tuning jobs run on: cuda:0", one.Log, StringComparison.Ordinal);
        }

        // Several boards in reverse order: cuda:0 is the last one named first, and every board gets a job slot.
        if (boards.Count >= 2)
        {
            var reversed = await StartAsync(string.Join(',', boards.Select(b => b.Uuid).Reverse()));
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

    private static async Task<(JsonElement System, string Log)> StartAsync(string visibleDevices)
    {
        using var daemon = await Daemon.StartAsync(new Dictionary<string, string> { ["CUDA_VISIBLE_DEVICES"] = visibleDevices });
        return (await daemon.GetAsync("/v1/system"), daemon.Log);
    }
}
