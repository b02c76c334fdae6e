using System.Globalization;
using Gpud.Storage.Sqlite;
using Microsoft.Extensions.Hosting.Systemd;

namespace Gpud.Hosting;

/// <summary>
/// Feeds systemd's watchdog (<c>WatchdogSec=</c> in the unit) at half its period while the daemon is healthy: the
/// thread pool runs this loop and the database still grants its write lock. A wedged process (deadlock, starved thread
/// pool, a stuck disk) stops feeding it, systemd restarts gpud, and running jobs resume from their last checkpoint.
/// Inactive unless systemd asked for it (<c>WATCHDOG_USEC</c> for this process).
/// </summary>
internal sealed partial class SystemdWatchdog(GpudDatabase database, ILogger<SystemdWatchdog> logger, ISystemdNotifier? notifier = null) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (notifier is not { IsEnabled: true } || Period() is not { } period) return;
        LogEnabled(logger, period.TotalSeconds / 2);
        using var timer = new PeriodicTimer(period / 2);
        do
        {
            if (database.CanWrite()) notifier.Notify(new ServiceState("WATCHDOG=1"));
            else LogUnhealthy(logger, database.Path);
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    /// <summary>sd_watchdog_enabled(): WATCHDOG_USEC, meant for this process if WATCHDOG_PID is unset or ours.</summary>
    internal static TimeSpan? Period()
    {
        var pid = Environment.GetEnvironmentVariable("WATCHDOG_PID");
        if (!string.IsNullOrEmpty(pid) && pid != Environment.ProcessId.ToString(CultureInfo.InvariantCulture)) return null;
        return long.TryParse(Environment.GetEnvironmentVariable("WATCHDOG_USEC"), NumberStyles.None, CultureInfo.InvariantCulture, out var usec) && usec > 0
            ? TimeSpan.FromMicroseconds(usec)
            : null;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "systemd watchdog enabled: pinging every {HalfPeriodSeconds:0.#} s while the database takes writes", EventName = "WatchdogEnabled")]
    private static partial void LogEnabled(ILogger logger, double halfPeriodSeconds);

    [LoggerMessage(Level = LogLevel.Error, Message = "Skipping a systemd watchdog ping: the database {Path} does not grant its write lock")]
    private static partial void LogUnhealthy(ILogger logger, string path);
}
