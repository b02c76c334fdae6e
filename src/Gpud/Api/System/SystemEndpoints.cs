using System.Reflection;
using Gpud.Api.Health;
using Gpud.Engine.Compute;
using Gpud.Hosting;
using Gpud.Services.Devices;
using Microsoft.Extensions.Options;

namespace Gpud.Api.System;

/// <summary><c>GET /v1/system</c> (gpud extension): what this node is and what it can compute on.</summary>
internal static class SystemEndpoints
{
    public static RouteGroupBuilder MapSystem(this RouteGroupBuilder v1)
    {
        v1.MapGet("/system", Get).WithTags("System").WithName("getSystem")
            .WithSummary("gpud extension: version, libtorch, CUDA and devices, data dir free space.");
        return v1;
    }

    private static SystemInfo Get(ComputeBackend backend, GpuMetrics gpus, IOptions<GpudOptions> options)
    {
        var info = backend.Info;
        var telemetry = gpus.Sample().ToDictionary(g => g.Device);
        var status = info is not null ? "ready" : backend.Failure is not null ? "failed" : "loading";
        var dataDir = Path.GetFullPath(options.Value.DataDir);
        return new SystemInfo(
            "system",
            typeof(SystemEndpoints).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "unknown",
            status,
            backend.Failure?.GetBaseException().Message,
            info?.LibTorchVersion,
            info?.CudaAvailable ?? false,
            info?.Devices.Select(d => telemetry.TryGetValue(d.Id, out var g)
                ? new SystemDevice(d.Id, d.Name, d.TotalMemoryBytes, g.MemoryUsedBytes, g.UtilizationPercent, g.TemperatureCelsius, g.PowerWatts, g.Uuid)
                : new SystemDevice(d.Id, d.Name, d.TotalMemoryBytes)).ToList() ?? [],
            dataDir,
            DiskSpaceCheck.FreeBytes(dataDir));
    }
}

public sealed record SystemInfo(
    string Object,
    string Version,
    string ComputeStatus,
    string? ComputeError,
    string? LibtorchVersion,
    bool CudaAvailable,
    IReadOnlyList<SystemDevice> Devices,
    string DataDir,
    long DataDirFreeBytes);

/// <summary>A device; on NVIDIA GPUs with a driver, also its current NVML reading (null elsewhere).</summary>
public sealed record SystemDevice(
    string Id,
    string Name,
    long TotalMemoryBytes,
    long? MemoryUsedBytes = null,
    double? UtilizationPercent = null,
    double? TemperatureCelsius = null,
    double? PowerWatts = null,
    string? Uuid = null);
