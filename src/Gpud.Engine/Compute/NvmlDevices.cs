using System.Runtime.InteropServices;

namespace Gpud.Engine.Compute;

/// <summary>
/// Names and memory sizes of NVIDIA GPUs through NVML (libnvidia-ml.so.1 from the driver). TorchSharp exposes no
/// device properties, and NVML is present wherever the driver is; it is loaded only if it exists.
/// </summary>
internal static unsafe class NvmlDevices
{
    [StructLayout(LayoutKind.Sequential)]
    private struct NvmlMemory
    {
        public ulong Total;
        public ulong Free;
        public ulong Used;
    }

    public static IReadOnlyList<(string Name, long TotalMemoryBytes)> TryDescribe()
    {
        if (!NativeLibrary.TryLoad("libnvidia-ml.so.1", out var lib)) return [];
        try
        {
            if (!NativeLibrary.TryGetExport(lib, "nvmlInit_v2", out var init)
                || !NativeLibrary.TryGetExport(lib, "nvmlDeviceGetCount_v2", out var getCount)
                || !NativeLibrary.TryGetExport(lib, "nvmlDeviceGetHandleByIndex_v2", out var getHandle)
                || !NativeLibrary.TryGetExport(lib, "nvmlDeviceGetName", out var getName)
                || !NativeLibrary.TryGetExport(lib, "nvmlDeviceGetMemoryInfo", out var getMemory))
                return [];

            if (((delegate* unmanaged<int>)init)() != 0) return [];
            uint count;
            if (((delegate* unmanaged<uint*, int>)getCount)(&count) != 0) return [];

            var result = new List<(string, long)>();
            var name = stackalloc byte[96];
            for (uint i = 0; i < count; i++)
            {
                nint handle;
                if (((delegate* unmanaged<uint, nint*, int>)getHandle)(i, &handle) != 0) break;
                var text = ((delegate* unmanaged<nint, byte*, uint, int>)getName)(handle, name, 96) == 0
                    ? Marshal.PtrToStringUTF8((nint)name) ?? "NVIDIA GPU"
                    : "NVIDIA GPU";
                NvmlMemory memory;
                var total = ((delegate* unmanaged<nint, NvmlMemory*, int>)getMemory)(handle, &memory) == 0
                    ? (long)memory.Total
                    : 0L;
                result.Add((text, total));
            }
            return result;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return [];
        }
    }
}
