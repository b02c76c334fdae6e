using Gpud.Engine.Compute;

namespace Gpud.Bench;

/// <summary>
/// The device's peak memory use as NVML sees it (every process, CUDA context and allocator cache included), sampled
/// every 2 ms on a background thread. TorchSharp has no <c>max_memory_allocated</c>; the Python peers are measured the
/// same way (pynvml) so the two figures compare like for like.
/// </summary>
internal sealed class GpuMemoryPeak : IDisposable
{
    private readonly Nvml? _nvml;
    private readonly int _index;
    private readonly Thread? _thread;
    private volatile bool _stop;
    private long _peak;

    public GpuMemoryPeak(string device)
    {
        if (!device.StartsWith("cuda", StringComparison.Ordinal)) return;
        _nvml = Nvml.TryOpen();
        _index = device.Contains(':', StringComparison.Ordinal) ? int.Parse(device[(device.IndexOf(':', StringComparison.Ordinal) + 1)..], System.Globalization.CultureInfo.InvariantCulture) : 0;
        if (_nvml is null) return;
        _thread = new Thread(Sample) { IsBackground = true, Name = "nvml-peak" };
        _thread.Start();
    }

    /// <summary>Peak bytes so far, or null off-GPU / without NVML.</summary>
    public long? PeakBytes => _thread is null ? null : Interlocked.Read(ref _peak);

    private void Sample()
    {
        while (!_stop)
        {
            var used = _nvml!.MemoryUsedBytes(_index) ?? 0;
            if (used > Interlocked.Read(ref _peak)) Interlocked.Exchange(ref _peak, used);
            Thread.Sleep(2);
        }
    }

    public void Dispose()
    {
        _stop = true;
        _thread?.Join();
    }
}
