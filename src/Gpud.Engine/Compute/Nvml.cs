using System.Globalization;
using System.Runtime.InteropServices;

namespace Gpud.Engine.Compute;

/// <summary>One reading of an NVIDIA GPU; a value the driver does not report (e.g. power on some boards) is null.</summary>
/// <param name="Device">The device as gpud names it (<c>cuda:N</c>, N as CUDA numbers the visible devices).</param>
/// <param name="Uuid">The board's UUID (<c>GPU-…</c>), stable across reboots and the same in <c>nvidia-smi -L</c>.</param>
public sealed record GpuSample(
    string Device,
    string Name,
    long MemoryUsedBytes,
    long MemoryTotalBytes,
    double? UtilizationPercent,
    double? TemperatureCelsius,
    double? PowerWatts,
    string? Uuid = null);

/// <summary>
/// NVIDIA's management library (libnvidia-ml.so.1, installed with the driver) through P/Invoke: names, memory,
/// utilization, temperature and power. TorchSharp exposes no device properties. Loaded only where it exists; on a
/// machine without the driver <see cref="TryOpen"/> returns null and gpud simply reports no GPU telemetry. Devices are
/// numbered as CUDA numbers them for this process: <c>CUDA_VISIBLE_DEVICES</c> (indices or UUIDs) selects and orders
/// them (set <c>CUDA_DEVICE_ORDER=PCI_BUS_ID</c>, as the shipped unit does, so both count in NVML's order).
/// </summary>
public sealed unsafe class Nvml
{
    private const int Success = 0;

    [StructLayout(LayoutKind.Sequential)]
    private struct Memory
    {
        public ulong Total;
        public ulong Free;
        public ulong Used;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Utilization
    {
        public uint Gpu;
        public uint Memory;
    }

    private readonly nint _getName, _getMemory, _getUtilization, _getTemperature, _getPower;
    private readonly List<nint> _handles; // by CUDA index
    private readonly List<string?> _uuids; // by CUDA index; a board's UUID never changes, so it is read once

    private Nvml(nint library)
    {
        _getName = NativeLibrary.GetExport(library, "nvmlDeviceGetName");
        _getMemory = NativeLibrary.GetExport(library, "nvmlDeviceGetMemoryInfo");
        _getUtilization = NativeLibrary.GetExport(library, "nvmlDeviceGetUtilizationRates");
        _getTemperature = NativeLibrary.GetExport(library, "nvmlDeviceGetTemperature");
        _getPower = NativeLibrary.GetExport(library, "nvmlDeviceGetPowerUsage");
        var init = NativeLibrary.GetExport(library, "nvmlInit_v2");
        if (((delegate* unmanaged<int>)init)() != Success) throw new DllNotFoundException("nvmlInit_v2 failed (no driver loaded?)");
        _handles = VisibleHandles(library);
        var getUuid = NativeLibrary.GetExport(library, "nvmlDeviceGetUUID");
        _uuids = _handles.Select(device =>
        {
            var uuid = stackalloc byte[96];
            return ((delegate* unmanaged<nint, byte*, uint, int>)getUuid)(device, uuid, 96) == Success ? Marshal.PtrToStringUTF8((nint)uuid) : null;
        }).ToList();
    }

    /// <summary>How many devices this process sees.</summary>
    public int DeviceCount => _handles.Count;

    /// <summary>Opens NVML, or returns null when the library (or a driver behind it) is not there.</summary>
    public static Nvml? TryOpen(string library = "libnvidia-ml.so.1")
    {
        if (!NativeLibrary.TryLoad(library, out var handle)) return null;
        try
        {
            return new Nvml(handle);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Memory in use on <c>cuda:<paramref name="index"/></c> (all processes), or null: one driver call, for
    /// callers that sample often (a benchmark's peak-memory thread).</summary>
    public long? MemoryUsedBytes(int index)
    {
        if (index < 0 || index >= _handles.Count) return null;
        Memory memory;
        return ((delegate* unmanaged<nint, Memory*, int>)_getMemory)(_handles[index], &memory) == Success ? (long)memory.Used : null;
    }

    /// <summary>A reading of every visible device.</summary>
    public IReadOnlyList<GpuSample> Sample() => Enumerable.Range(0, _handles.Count).Select(i => Sample(i)!).ToList();

    /// <summary>A reading of <c>cuda:<paramref name="index"/></c>, or null if there is no such device.</summary>
    public GpuSample? Sample(int index)
    {
        if (index < 0 || index >= _handles.Count) return null;
        var device = _handles[index];
        var name = stackalloc byte[96];
        var text = ((delegate* unmanaged<nint, byte*, uint, int>)_getName)(device, name, 96) == Success
            ? Marshal.PtrToStringUTF8((nint)name) ?? "NVIDIA GPU"
            : "NVIDIA GPU";
        Memory memory;
        var hasMemory = ((delegate* unmanaged<nint, Memory*, int>)_getMemory)(device, &memory) == Success;
        Utilization utilization;
        var hasUtilization = ((delegate* unmanaged<nint, Utilization*, int>)_getUtilization)(device, &utilization) == Success;
        uint celsius, milliwatts;
        var hasTemperature = ((delegate* unmanaged<nint, int, uint*, int>)_getTemperature)(device, 0 /* NVML_TEMPERATURE_GPU */, &celsius) == Success;
        var hasPower = ((delegate* unmanaged<nint, uint*, int>)_getPower)(device, &milliwatts) == Success;
        return new GpuSample($"cuda:{index}", text,
            hasMemory ? (long)memory.Used : 0, hasMemory ? (long)memory.Total : 0,
            hasUtilization ? utilization.Gpu : null,
            hasTemperature ? celsius : null,
            hasPower ? milliwatts / 1000.0 : null,
            _uuids[index]);
    }

    private static List<nint> VisibleHandles(nint library)
    {
        var getCount = NativeLibrary.GetExport(library, "nvmlDeviceGetCount_v2");
        var byIndex = NativeLibrary.GetExport(library, "nvmlDeviceGetHandleByIndex_v2");
        var byUuid = NativeLibrary.GetExport(library, "nvmlDeviceGetHandleByUUID");
        uint reported;
        if (((delegate* unmanaged<uint*, int>)getCount)(&reported) != Success) return [];
        var count = reported;

        nint Index(uint i)
        {
            nint handle;
            return i < count && ((delegate* unmanaged<uint, nint*, int>)byIndex)(i, &handle) == Success ? handle : 0;
        }

        var visible = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES");
        if (visible is null) return Enumerable.Range(0, (int)count).Select(i => Index((uint)i)).Where(h => h != 0).ToList();
        var handles = new List<nint>();
        foreach (var entry in visible.Split(',', StringSplitOptions.TrimEntries))
        {
            // CUDA stops at the first entry it cannot use; so does this.
            nint handle;
            if (uint.TryParse(entry, NumberStyles.None, CultureInfo.InvariantCulture, out var i)) handle = Index(i);
            else
            {
                var uuid = Marshal.StringToCoTaskMemUTF8(entry);
                try
                {
                    handle = ((delegate* unmanaged<byte*, nint*, int>)byUuid)((byte*)uuid, &handle) == Success ? handle : 0;
                }
                finally
                {
                    Marshal.FreeCoTaskMem(uuid);
                }
            }
            if (handle == 0) break;
            handles.Add(handle);
        }
        return handles;
    }
}
