using System.Collections.Concurrent;
using Gpud.Engine.Compute;
using Gpud.Services.Models;
using Gpud.Storage.FineTuning;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Gpud.Services.FineTuning;

/// <summary>Why a running job is asked to stop.</summary>
public enum JobStopReason
{
    /// <summary>Stop at once (between micro-batches); the job is already <c>cancelled</c>.</summary>
    Cancel,

    /// <summary>Finish the step, checkpoint, and stay <c>paused</c>.</summary>
    Pause,

    /// <summary>The daemon is stopping: finish the step, checkpoint, and go back to the head of the queue.</summary>
    Shutdown,
}

/// <summary>
/// Estimated starts (unix s) of queued jobs as the scheduler last computed them; a job is absent until the device it
/// would take has a measured throughput. (Positions are read from the database, consistent with the statuses.)
/// </summary>
public sealed record QueueEstimates(IReadOnlyDictionary<string, long> EstimatedStarts)
{
    public static QueueEstimates Empty { get; } = new(new Dictionary<string, long>());
}

/// <summary>
/// A strict FIFO queue over compute slots, one per configured device. The oldest queued job takes the first free slot
/// its model may use; a job never overtakes an older one (if the head cannot start, nothing starts). At start-up a job
/// that was running when the process died goes back to the head of the queue and resumes from its last checkpoint; on
/// shutdown running jobs checkpoint after their current step and go back to the head.
/// </summary>
public sealed partial class JobScheduler : BackgroundService
{
    private readonly JobRepository _jobs;
    private readonly JobRunner _runner;
    private readonly ModelCatalog _models;
    private readonly JobEvents _events;
    private readonly FineTuningMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger<JobScheduler> _logger;
    private readonly FineTuningSettings _settings;
    private readonly ComputeBackend _compute;
    private readonly FinishedJobFiles _finished;
    private Slot[] _slots = [];
    private readonly SemaphoreSlim _wake = new(0);
    private readonly ConcurrentDictionary<string, JobControl> _active = new(StringComparer.Ordinal);
    private readonly Lock _dispatch = new();
    private QueueEstimates _estimates = QueueEstimates.Empty;

    public JobScheduler(JobRepository jobs, JobRunner runner, ModelCatalog models, FineTuningSettings settings, JobValidationWorker validator,
        ComputeBackend compute, FinishedJobFiles finished, JobEvents events, FineTuningMetrics metrics, TimeProvider time, ILogger<JobScheduler> logger)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(validator);
        _jobs = jobs;
        _runner = runner;
        _models = models;
        _events = events;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        _settings = settings;
        _compute = compute;
        _finished = finished;
        validator.Validated += Wake;
    }

    public QueueEstimates Estimates => Volatile.Read(ref _estimates);

    public void Wake()
    {
        if (_wake.CurrentCount == 0) _wake.Release();
    }

    /// <summary>Asks a running job to stop; does nothing if the job is not running here.</summary>
    public void Stop(string jobId, JobStopReason reason)
    {
        if (_active.TryGetValue(jobId, out var control)) control.Request(reason);
    }

    /// <summary>
    /// Frees an ended job's resume state (<see cref="FinishedJobFiles"/>) now, unless a runner still holds the job:
    /// then the runner's end frees it.
    /// </summary>
    public void ReleaseEnded(string jobId)
    {
        lock (_dispatch)
        {
            // Under the dispatch lock, so a job cannot be starting meanwhile; an ended job never starts again.
            if (_active.ContainsKey(jobId)) return;
        }
        _finished.Release(jobId);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        RecoverInterruptedJobs();
        _finished.ReleaseAll();
        _slots = ResolveSlots().Select(d => new Slot(d)).ToArray();
        while (!stoppingToken.IsCancellationRequested)
        {
            if (_models.Loaded) Dispatch();
            RefreshEstimates();
            try
            {
                await _wake.WaitAsync(TimeSpan.FromSeconds(5), stoppingToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        // Drain: every running job checkpoints after its current step and goes back to the head of the queue.
        var running = _slots.Select(s => s.Running).OfType<RunningJob>().ToList();
        foreach (var job in running) job.Control.Request(JobStopReason.Shutdown);
        if (running.Count > 0) LogDraining(_logger, running.Count);
        await Task.WhenAll(running.Select(r => r.Task));
    }

    /// <summary>The configured devices that exist, or every CUDA device (or the CPU when there is none).</summary>
    private List<DeviceSlotDefinition> ResolveSlots()
    {
        ComputeInfo info;
        try
        {
            info = _compute.Initialize();
        }
        catch (Exception e)
        {
            LogNoCompute(_logger, e);
            return [];
        }
        var available = info.Devices.Select(d => d.Id).ToHashSet(StringComparer.Ordinal);
        var slots = _settings.Devices.Count > 0
            ? _settings.Devices.ToList()
            : info.Devices.Where(d => d.Id.StartsWith("cuda", StringComparison.Ordinal)).Select(d => new DeviceSlotDefinition(d.Id)).DefaultIfEmpty(new DeviceSlotDefinition("cpu")).ToList();
        foreach (var missing in slots.Where(s => !available.Contains(s.Name)).ToList())
        {
            LogMissingDevice(_logger, missing.Name, string.Join(", ", available));
            slots.Remove(missing);
        }
        foreach (var slot in slots) _metrics.DeviceBusy.WithLabels(slot.Name).Set(0);
        LogSlots(_logger, string.Join(", ", slots.Select(s => s.Name)));
        return slots;
    }

    /// <summary>Jobs that were running when the process died go back to the head of the queue, oldest start first.</summary>
    private void RecoverInterruptedJobs()
    {
        var interrupted = _jobs.WithStatus(JobStatus.Running).OrderByDescending(j => j.StartedAt ?? 0).ToList();
        foreach (var job in interrupted)
        {
            var message = job.ResumeStep is { } step
                ? $"gpud stopped while the job was running; it is queued first and resumes from the checkpoint at step {step}"
                : "gpud stopped while the job was running; it is queued first and restarts from the beginning";
            _jobs.Update(job.Id, [JobStatus.Running], new JobChanges
            {
                Status = JobStatus.Queued,
                Queue = QueuePlacement.Head,
                QueuedAt = _time.GetUtcNow().ToUnixTimeMilliseconds(),
                Clear = ["stage", "device", "estimated_finish"],
            }, [_events.Warn(job.Id, message)]);
            LogRecovered(_logger, job.Id, job.ResumeStep ?? 0);
        }
        _metrics.SetJobCounts(_jobs.CountByStatus());
    }

    private void Dispatch()
    {
        lock (_dispatch)
        {
            while (_slots.Any(s => s.Running is null))
            {
                var head = _jobs.FirstWithStatus(JobStatus.Queued);
                if (head is null || _active.ContainsKey(head.Id)) return; // a paused-then-resumed job still winding down
                var allowed = _models.TryGet(head.Model, out var model) ? model.Definition.Devices : [];
                var slot = _slots.FirstOrDefault(s => s.Running is null && (allowed.Count == 0 || allowed.Contains(s.Definition.Name)));
                if (slot is null) return; // strict FIFO: nothing overtakes the head

                var now = _time.GetUtcNow();
                var started = _jobs.Update(head.Id, [JobStatus.Queued], new JobChanges
                {
                    Status = JobStatus.Running,
                    Queue = QueuePlacement.Remove,
                    Device = slot.Definition.Name,
                    StartedAt = now.ToUnixTimeSeconds(),
                    HourlyPrice = slot.Definition.HourlyPrice,
                    Stage = JobStage.LoadingModel,
                }, [_events.Info(head.Id, $"Fine-tuning job started on {slot.Definition.Name}")]);
                if (started is null) continue; // cancelled or paused in between
                if (head.QueuedAt is { } queuedAt)
                    _metrics.QueueWait.Observe(Math.Max(0, now.ToUnixTimeMilliseconds() - queuedAt) / 1000.0);
                Start(slot, started);
            }
        }
    }

    private void Start(Slot slot, JobRecord job)
    {
        var control = new JobControl(job.Id);
        _active[job.Id] = control;
        _metrics.DeviceBusy.WithLabels(slot.Definition.Name).Set(1);
        _metrics.SetJobCounts(_jobs.CountByStatus());
        LogStarted(_logger, job.Id, slot.Definition.Name);
        var task = new Task(() =>
        {
            try
            {
                var throughput = _runner.Run(job, slot.Definition, control);
                if (throughput > 0) slot.TokensPerSecond = throughput;
            }
            catch (Exception e)
            {
                // JobRunner fails jobs itself; anything escaping it is a bug, and must not take the slot down.
                LogRunnerCrashed(_logger, e, job.Id);
            }
            finally
            {
                _metrics.DeviceBusy.WithLabels(slot.Definition.Name).Set(0);
                _active.TryRemove(job.Id, out _);
                _finished.Release(job.Id); // no runner holds the job any more
                slot.Running = null;
                control.Dispose();
                _metrics.SetJobCounts(_jobs.CountByStatus());
                Wake();
            }
        }, TaskCreationOptions.LongRunning);
        slot.Running = new RunningJob(job.Id, control, task); // before it starts, so a quick finish cannot be overwritten
        task.Start(TaskScheduler.Default);
    }

    /// <summary>Recomputes estimated starts: in queue order, each job takes the slot that frees up first.</summary>
    private void RefreshEstimates()
    {
        var queued = _jobs.WithStatus(JobStatus.Queued);
        var now = _time.GetUtcNow().ToUnixTimeSeconds();
        var free = _slots.Select(s => s.Running is null ? (long?)now : _jobs.Get(s.Running.JobId)?.EstimatedFinish).ToArray();
        var starts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var job in queued)
        {
            var best = -1;
            for (var s = 0; s < free.Length; s++)
            {
                if (free[s] is { } t && (best < 0 || t < free[best]!.Value)) best = s;
            }
            if (best < 0) break; // no slot has a known free time: later jobs cannot be estimated either
            var start = Math.Max(now, free[best]!.Value);
            starts[job.Id] = start;
            free[best] = EstimateSeconds(job, _slots[best]) is { } seconds ? start + (long)seconds : null;
        }
        Volatile.Write(ref _estimates, new QueueEstimates(starts));
    }

    /// <summary>Tokens to process over the slot's last measured throughput; null until the slot has run a job.</summary>
    private static double? EstimateSeconds(JobRecord job, Slot slot)
    {
        if (slot.TokensPerSecond is not { } rate) return null;
        var view = FineTuningJobView.From(job);
        return view.Dataset is { } dataset && view.Hyperparameters.NEpochs is { } epochs ? dataset.Tokens * epochs / rate : null;
    }

    public override void Dispose()
    {
        _wake.Dispose();
        base.Dispose();
    }

    private sealed class Slot(DeviceSlotDefinition definition)
    {
        public DeviceSlotDefinition Definition { get; } = definition;

        public volatile RunningJob? Running;

        /// <summary>Throughput of the last job that ran here (for queue estimates).</summary>
        public double? TokensPerSecond { get; set; }
    }

    private sealed record RunningJob(string JobId, JobControl Control, Task Task);

    [LoggerMessage(Level = LogLevel.Information, Message = "Fine-tuning jobs run on: {Devices}")]
    private static partial void LogSlots(ILogger logger, string devices);

    [LoggerMessage(Level = LogLevel.Error, Message = "Gpud:Devices names {Device}, which this machine does not have (it has {Available}); no jobs will run there")]
    private static partial void LogMissingDevice(ILogger logger, string device, string available);

    [LoggerMessage(Level = LogLevel.Critical, Message = "libtorch could not be loaded, so no fine-tuning job can run")]
    private static partial void LogNoCompute(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Fine-tuning job {JobId} started on {Device}")]
    private static partial void LogStarted(ILogger logger, string jobId, string device);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Fine-tuning job {JobId} was running when gpud stopped; re-queued at the head to resume from step {Step}")]
    private static partial void LogRecovered(ILogger logger, string jobId, int step);

    [LoggerMessage(Level = LogLevel.Information, Message = "Stopping: {Count} running jobs checkpoint after their current step")]
    private static partial void LogDraining(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Critical, Message = "The runner of fine-tuning job {JobId} failed unexpectedly")]
    private static partial void LogRunnerCrashed(ILogger logger, Exception exception, string jobId);
}

/// <summary>How the API reaches a running job: a cancel token and a "stop after this step" request.</summary>
public sealed class JobControl(string jobId) : IDisposable
{
    private readonly CancellationTokenSource _cancel = new();
    private int _stop = -1;

    public string JobId { get; } = jobId;

    /// <summary>Cancelled when the job is cancelled (honoured between micro-batches).</summary>
    public CancellationToken Cancelled => _cancel.Token;

    /// <summary>Pause or shutdown, once asked; the first request wins, except that a cancel always goes through.</summary>
    public JobStopReason? StopRequested => Volatile.Read(ref _stop) is var s and >= 0 ? (JobStopReason)s : null;

    public void Request(JobStopReason reason)
    {
        Interlocked.CompareExchange(ref _stop, (int)reason, -1);
        if (reason == JobStopReason.Cancel)
        {
            Volatile.Write(ref _stop, (int)JobStopReason.Cancel);
            try
            {
                _cancel.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    public void Dispose() => _cancel.Dispose();
}
