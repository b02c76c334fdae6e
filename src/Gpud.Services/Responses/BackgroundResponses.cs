using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Gpud.Services.Responses;

/// <summary>
/// Background responses in flight: each runs after its request has returned, under a token a cancel or shutdown
/// stops. At start-up, those a previous process left queued or running are marked failed (their runs died with it).
/// </summary>
public sealed partial class BackgroundResponses(ResponseStore store, ILogger<BackgroundResponses> logger) : IHostedService, IDisposable
{
    private readonly ConcurrentDictionary<string, Entry> _running = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _stopping = new();
    private int _disposed;

    /// <summary>A token for response <paramref name="id"/>'s run: cancelled by <see cref="Cancel"/> or shutdown.</summary>
    public CancellationToken Register(string id)
    {
        var entry = new Entry(CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token));
        if (!_running.TryAdd(id, entry)) throw new InvalidOperationException($"Response {id} is already running.");
        return entry.Cancellation.Token;
    }

    /// <summary>Runs <paramref name="work"/> for a registered response; its failures are the work's to record.</summary>
    public void Run(string id, Func<CancellationToken, Task> work)
    {
        ArgumentNullException.ThrowIfNull(work);
        var entry = _running[id];
        entry.Task = Task.Run(async () =>
        {
            try
            {
                await work(entry.Cancellation.Token);
            }
            catch (Exception e)
            {
                LogFailed(logger, id, e);
            }
            finally
            {
                _running.TryRemove(id, out _);
                entry.Cancellation.Dispose();
            }
        });
    }

    /// <summary>Drops a registration whose run never started.</summary>
    public void Forget(string id)
    {
        if (_running.TryRemove(id, out var entry)) entry.Cancellation.Dispose();
    }

    /// <summary>Stops a response's run, if it is still running here.</summary>
    public void Cancel(string id)
    {
        if (!_running.TryGetValue(id, out var entry)) return;
        try
        {
            entry.Cancellation.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // It ended meanwhile.
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        var failed = store.FailInterrupted();
        if (failed > 0) LogInterrupted(logger, failed);
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await _stopping.CancelAsync();
        }
        catch (ObjectDisposedException)
        {
            return; // the container was disposed first (a host torn down without stopping): nothing runs any more
        }
        var tasks = _running.Values.Select(e => e.Task).OfType<Task>().ToList();
        await Task.WhenAll(tasks).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>Idempotent: the container disposes it once as itself and once as a hosted service.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        _stopping.Cancel();
        _stopping.Dispose();
    }

    private sealed class Entry(CancellationTokenSource cancellation)
    {
        public CancellationTokenSource Cancellation { get; } = cancellation;

        public Task? Task { get; set; }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Background response {ResponseId} failed")]
    private static partial void LogFailed(ILogger logger, string responseId, Exception exception);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Count} background responses were queued or running when gpud stopped: marked failed")]
    private static partial void LogInterrupted(ILogger logger, int count);
}
