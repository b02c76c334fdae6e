using System.Runtime.InteropServices;
using TorchSharp;

namespace Gpud.Engine.Compute;

/// <summary>
/// Loads TorchSharp's native backend once and describes the devices it can use. Loading libtorch takes a noticeable
/// fraction of a second and hundreds of MB of mappings, so the host calls <see cref="Initialize"/> off the request
/// path and reports readiness until it has finished.
/// </summary>
public sealed class ComputeBackend
{
    private readonly Lock _gate = new();
    private ComputeInfo? _info;
    private Exception? _failure;

    /// <summary>The backend's description once <see cref="Initialize"/> succeeded; otherwise null.</summary>
    public ComputeInfo? Info => Volatile.Read(ref _info);

    /// <summary>NVIDIA's management library once <see cref="Initialize"/> ran, if this machine has the driver.</summary>
    public Nvml? Nvml { get; private set; }

    /// <summary>Why initialisation failed, if it did.</summary>
    public Exception? Failure => Volatile.Read(ref _failure);

    public ComputeInfo Initialize()
    {
        lock (_gate)
        {
            if (_info is not null) return _info;
            try
            {
                // Forces the native library load; throws a TypeInitializationException if it cannot be loaded.
                var cuda = torch.cuda.is_available();
                using (var probe = torch.ones(2, 2).matmul(torch.ones(2, 2)))
                {
                    if (probe.sum().item<float>() != 8f)
                        throw new InvalidOperationException("libtorch returned a wrong result for a 2x2 matmul");
                }

                var devices = new List<ComputeDevice>();
                if (cuda)
                {
                    var count = torch.cuda.device_count();
                    Nvml ??= Nvml.TryOpen();
                    for (var i = 0; i < count; i++)
                    {
                        var sample = Nvml?.Sample(i);
                        devices.Add(new ComputeDevice($"cuda:{i}", sample?.Name ?? "CUDA device", sample?.MemoryTotalBytes ?? 0));
                    }
                }
                devices.Add(new ComputeDevice("cpu", CpuName(), GC.GetGCMemoryInfo().TotalAvailableMemoryBytes));

                _info = new ComputeInfo(torch.__version__, cuda, devices);
                _failure = null;
                return _info;
            }
            catch (Exception e)
            {
                _failure = e;
                throw;
            }
        }
    }

    private static string CpuName()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.StartsWith("model name", StringComparison.Ordinal))
                {
                    var colon = line.IndexOf(':', StringComparison.Ordinal);
                    if (colon > 0) return $"{line[(colon + 1)..].Trim()} ({Environment.ProcessorCount} threads)";
                }
            }
        }
        catch (IOException)
        {
        }
        return $"{RuntimeInformation.ProcessArchitecture} CPU ({Environment.ProcessorCount} threads)";
    }
}
