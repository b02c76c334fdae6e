namespace Gpud.Engine.Compute;

/// <summary>A device jobs and inference can run on: <c>cpu</c> or <c>cuda:N</c>.</summary>
public sealed record ComputeDevice(string Id, string Name, long TotalMemoryBytes)
{
    /// <summary>True for the device names configuration may use: <c>cpu</c> or <c>cuda:N</c>.</summary>
    public static bool IsValidId(string id) =>
        id == "cpu" || (id.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(id.AsSpan(5), out var index) && index >= 0);
}

/// <summary>What the loaded TorchSharp backend offers.</summary>
public sealed record ComputeInfo(string LibTorchVersion, bool CudaAvailable, IReadOnlyList<ComputeDevice> Devices);
