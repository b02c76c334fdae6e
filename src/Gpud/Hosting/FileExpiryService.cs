using Gpud.Services.Files;

namespace Gpud.Hosting;

/// <summary>Deletes expired files' bytes every few minutes (expired files are hidden from the API the moment they expire).</summary>
internal sealed class FileExpiryService(FilesService files, TimeProvider time) : BackgroundService
{
    private static readonly TimeSpan Interval = TimeSpan.FromMinutes(5);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        do
        {
            files.DeleteExpired();
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
