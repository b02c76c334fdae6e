using Gpud.Services.Responses;

namespace Gpud.Hosting;

/// <summary>Removes expired stored responses every few minutes (they are hidden from the API the moment they expire).</summary>
internal sealed class ResponseExpiryService(ResponseStore responses, TimeProvider time) : BackgroundService
{
    private static readonly TimeSpan Interval = TimeSpan.FromMinutes(5);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        do
        {
            responses.DeleteExpired();
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
