using Gpud.Services.Files;
using Microsoft.Data.Sqlite;
using Gpud.Storage.Sqlite;

namespace Gpud.Hosting;

/// <summary>
/// Brings the data dir to a consistent state before any request is served: applies schema migrations, then removes
/// what an unclean stop (kill -9, power loss) may have left half-done.
/// </summary>
internal sealed partial class StateInitializer(GpudDatabase database, FilesService files, UploadsService uploads, ILogger<StateInitializer> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        try
        {
            var applied = database.Migrate();
            if (applied.Count > 0) LogMigrated(logger, database.Path, string.Join(", ", applied));
            files.Recover();
            uploads.Recover();
            LogReady(logger, database.Path, database.SchemaVersion());
            return Task.CompletedTask;
        }
        catch (Exception e) when (e is SqliteException or IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            // A data dir gpud cannot use is a configuration problem: say which and why, and do not restart-loop.
            throw new StartupRefusedException($"Cannot use the data directory for {database.Path} (Gpud:DataDir): {e.Message}");
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(Level = LogLevel.Information, Message = "Database {Path}: applied schema migrations {Versions}")]
    private static partial void LogMigrated(ILogger logger, string path, string versions);

    [LoggerMessage(Level = LogLevel.Information, Message = "Database {Path} at schema version {Version}")]
    private static partial void LogReady(ILogger logger, string path, int version);
}
