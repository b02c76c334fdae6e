using Gpud.Engine.Compute;

namespace Gpud.Hosting;

/// <summary>
/// Loads libtorch in the background so the HTTP endpoints (health, files) answer at once; <c>/readyz</c> reports
/// not-ready until the compute backend is usable.
/// </summary>
internal sealed partial class ComputeBackendLoader(ComputeBackend backend, ILogger<ComputeBackendLoader> logger) : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => Task.Run(() =>
    {
        try
        {
            var info = backend.Initialize();
            LogLoaded(logger, info.LibTorchVersion, info.CudaAvailable, string.Join(", ", info.Devices.Select(d => $"{d.Id} ({d.Name})")));
        }
        catch (Exception e)
        {
            // The daemon keeps serving files and health so an operator can see the problem through /readyz and /v1/system.
            LogFailed(logger, e);
        }
    }, stoppingToken);

    [LoggerMessage(Level = LogLevel.Information, Message = "Compute backend ready: libtorch {Version}, CUDA available: {Cuda}, devices: {Devices}")]
    private static partial void LogLoaded(ILogger logger, string version, bool cuda, string devices);

    [LoggerMessage(Level = LogLevel.Critical, Message = "The compute backend (TorchSharp/libtorch) failed to load")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
