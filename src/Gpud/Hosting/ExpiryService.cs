using Gpud.Services.ChatCompletions;
using Gpud.Services.Files;
using Gpud.Services.Responses;

namespace Gpud.Hosting;

/// <summary>
/// Every few minutes, removes what has expired: files' bytes, pending uploads' parts, stored responses' and stored chat
/// completions' rows (all are hidden from the API the moment they expire).
/// </summary>
internal sealed class ExpiryService(FilesService files, UploadsService uploads, ResponseStore responses, ChatCompletionStore completions, TimeProvider time)
    : BackgroundService
{
    private static readonly TimeSpan Interval = TimeSpan.FromMinutes(5);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        do
        {
            files.DeleteExpired();
            uploads.DeleteExpired();
            responses.DeleteExpired();
            completions.DeleteExpired();
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }
}
