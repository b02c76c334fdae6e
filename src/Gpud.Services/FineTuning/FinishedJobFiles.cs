using System.Globalization;
using Gpud.Engine.Training;
using Gpud.Storage.FineTuning;
using Microsoft.Extensions.Logging;

namespace Gpud.Services.FineTuning;

/// <summary>
/// Frees what only a resume needs once a job has ended (succeeded, failed or cancelled: none runs again). Its live
/// checkpoints stay servable models but lose their optimizer and trainer state; a pause or shutdown resume point that
/// is not a visible checkpoint, the copy of a parent adapter, and temporary directories a crash left are removed. A
/// running job's directory is never touched: callers hand over a job only once no runner holds it.
/// </summary>
public sealed partial class FinishedJobFiles(JobRepository jobs, FineTuningSettings settings, ILogger<FinishedJobFiles> logger)
{
    /// <summary>Frees the job's resume state if it has ended; does nothing otherwise.</summary>
    /// <returns>The bytes freed.</returns>
    public long Release(string jobId)
    {
        ArgumentException.ThrowIfNullOrEmpty(jobId);
        var root = settings.JobDirectory(jobId);
        if (!Directory.Exists(root) || jobs.Get(jobId) is not { } job || !JobStatus.IsFinished(job.Status)) return 0;
        long freed = 0;
        try
        {
            var checkpoints = Path.Combine(root, "checkpoints");
            if (Directory.Exists(checkpoints))
            {
                var live = jobs.LiveCheckpointSteps(jobId);
                foreach (var directory in Directory.EnumerateDirectories(checkpoints))
                {
                    var name = Path.GetFileName(directory);
                    freed += name.StartsWith("step-", StringComparison.Ordinal)
                             && int.TryParse(name.AsSpan("step-".Length), NumberStyles.None, CultureInfo.InvariantCulture, out var step) && live.Contains(step)
                        ? LoraTrainer.DiscardResumeState(directory)
                        : Delete(directory);
                }
            }
            freed += Delete(settings.ParentAdapterDirectory(jobId));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Only disk space is at stake: the next start-up sweep tries again.
            LogReleaseFailed(logger, e, jobId);
            return freed;
        }
        if (freed > 0) LogReleased(logger, jobId, job.Status, freed);
        return freed;
    }

    /// <summary>Releases every ended job that still holds resume state (after a crash, or data from an older gpud).</summary>
    /// <returns>The bytes freed.</returns>
    public long ReleaseAll()
    {
        var root = Path.Combine(settings.DataDir, "jobs");
        if (!Directory.Exists(root)) return 0;
        long freed = 0;
        foreach (var directory in Directory.EnumerateDirectories(root)) freed += Release(Path.GetFileName(directory));
        return freed;
    }

    private static long Delete(string directory)
    {
        if (!Directory.Exists(directory)) return 0;
        var bytes = new DirectoryInfo(directory).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
        Directory.Delete(directory, recursive: true);
        return bytes;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Fine-tuning job {JobId} ended ({Status}): freed {Bytes} bytes of resume state; its checkpoints stay servable")]
    private static partial void LogReleased(ILogger logger, string jobId, string status, long bytes);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not free the resume state of fine-tuning job {JobId}; the next start retries")]
    private static partial void LogReleaseFailed(ILogger logger, Exception exception, string jobId);
}
