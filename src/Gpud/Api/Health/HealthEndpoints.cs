using System.Text.Json;
using Gpud.Engine.Compute;
using Gpud.Hosting;
using Gpud.Storage.Sqlite;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;

namespace Gpud.Api.Health;

/// <summary>
/// <c>/healthz</c>: the process is alive (no checks, for a liveness probe). <c>/readyz</c>: the database takes
/// writes, the data dir has room, and the compute backend is loaded (for a readiness probe or a load balancer).
/// </summary>
internal static class HealthEndpoints
{
    public const string ReadyTag = "ready";

    public static IHealthChecksBuilder AddGpudHealthChecks(this IServiceCollection services) =>
        services.AddHealthChecks()
            .AddCheck<DatabaseWritableCheck>("database", tags: [ReadyTag])
            .AddCheck<DiskSpaceCheck>("disk", tags: [ReadyTag])
            .AddCheck<ComputeBackendCheck>("compute", tags: [ReadyTag])
            .AddCheck<ModelCatalogCheck>("models", tags: [ReadyTag]);

    public static IEndpointRouteBuilder MapHealth(this IEndpointRouteBuilder app)
    {
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteAsync })
            .WithMetadata(new ExcludeFromDescriptionAttribute());
        app.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = c => c.Tags.Contains(ReadyTag), ResponseWriter = WriteAsync })
            .WithMetadata(new ExcludeFromDescriptionAttribute());
        return app;
    }

    private static Task WriteAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        context.Response.Headers.CacheControl = "no-store";
        var body = new
        {
            status = report.Status == HealthStatus.Healthy ? "ok" : "unavailable",
            checks = report.Entries.ToDictionary(
                e => e.Key,
                e => new { status = e.Value.Status == HealthStatus.Healthy ? "ok" : "failing", detail = e.Value.Description }),
        };
        return JsonSerializer.SerializeAsync(context.Response.Body, body, cancellationToken: context.RequestAborted);
    }
}

internal sealed class DatabaseWritableCheck(GpudDatabase database) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(database.CanWrite()
            ? HealthCheckResult.Healthy("writable")
            : HealthCheckResult.Unhealthy($"{database.Path} does not accept writes"));
}

internal sealed class DiskSpaceCheck(IOptions<GpudOptions> options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var free = FreeBytes(options.Value.DataDir);
        var min = options.Value.MinFreeDiskBytes;
        return Task.FromResult(free >= min
            ? HealthCheckResult.Healthy($"{free} bytes free")
            : HealthCheckResult.Unhealthy($"{free} bytes free, below Gpud:MinFreeDiskBytes ({min})"));
    }

    public static long FreeBytes(string directory) => new DriveInfo(Path.GetFullPath(directory)).AvailableFreeSpace;
}

internal sealed class ComputeBackendCheck(ComputeBackend backend) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(backend.Info is { } info
            ? HealthCheckResult.Healthy($"libtorch {info.LibTorchVersion}")
            : backend.Failure is { } failure
                ? HealthCheckResult.Unhealthy($"failed to load: {failure.GetBaseException().Message}")
                : HealthCheckResult.Unhealthy("loading"));
}

internal sealed class ModelCatalogCheck(Gpud.Services.Models.ModelCatalog catalog) : IHealthCheck
{
    // Ready once every model directory was checked. A broken one is logged and left out, not a reason to take the
    // node out of rotation: the others still serve.
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(!catalog.Loaded
            ? HealthCheckResult.Unhealthy("checking model directories")
            : HealthCheckResult.Healthy(catalog.Failures.Count == 0
                ? $"{catalog.List().Count} models"
                : $"{catalog.List().Count} models; not served: {string.Join("; ", catalog.Failures.Select(f => $"{f.Key}: {f.Value}"))}"));
}
