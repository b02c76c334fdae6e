namespace Gpud.Engine.Compute;

/// <summary>A device jobs and inference can run on: <c>cpu</c> or <c>cuda:N</c>.</summary>
public sealed record ComputeDevice(string Id, string Name, long TotalMemoryBytes);

/// <summary>What the loaded TorchSharp backend offers.</summary>
public sealed record ComputeInfo(string LibTorchVersion, bool CudaAvailable, IReadOnlyList<ComputeDevice> Devices);
