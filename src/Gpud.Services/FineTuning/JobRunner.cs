using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Gpud.Engine.Compute;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Engine.Training;
using Gpud.Services.Devices;
using Gpud.Services.Files;
using Gpud.Services.Ids;
using Gpud.Services.Models;
using Gpud.Storage.FineTuning;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Gpud.Services.FineTuning;

/// <summary>
/// Runs one job on one device, start to finish: loads the base model, attaches the adapter, trains (resuming from the
/// job's last checkpoint if it has one), writes checkpoints and the final adapter, and records the outcome. Whatever
/// goes wrong fails this job alone, with an OpenAI-style error, and frees the device.
/// </summary>
public sealed partial class JobRunner(
    JobRepository jobs,
    FilesService files,
    ModelCatalog models,
    FineTuningSettings settings,
    JobEvents events,
    FineTuningMetrics metrics,
    ComputeBackend backend,
    DeviceTurns turns,
    TimeProvider time,
    ILogger<JobRunner> logger)
{
    /// <summary>Runs the job (already marked running) until it ends, pauses or is stopped.</summary>
    /// <returns>Training throughput in tokens/s (0 if no step ran), for queue estimates.</returns>
    public double Run(JobRecord job, DeviceSlotDefinition slot, JobControl control)
    {
        ArgumentNullException.ThrowIfNull(job);
        ArgumentNullException.ThrowIfNull(slot);
        ArgumentNullException.ThrowIfNull(control);
        var watch = Stopwatch.StartNew();
        var outcome = "failed";
        JobSink? sink = null;
        try
        {
            var view = FineTuningJobView.From(job);
            var hyper = view.Hyperparameters;
            var baseModel = models.Get(job.Model);
            var device = new Device(slot.Name);
            var dtype = baseModel.DTypeOn(device);

            using var model = CausalLanguageModel.Load(baseModel.Definition.Path, device, dtype);
            var targets = hyper.TargetModules;
            IReadOnlyList<TorchSharp.Modules.Parameter> parameters;
            if (job.ParentModel is null)
            {
                parameters = LoraModel.Attach(model, hyper.Lora, targets, job.Seed);
            }
            else
            {
                using var parent = PeftAdapter.Read(settings.ParentAdapterDirectory(job.Id), model.Config);
                parameters = LoraModel.Continue(model, parent, hyper.LoraDropout);
            }
            var training = JobData.Load(baseModel, files, job.Project, job.TrainingFile, "training_file", settings.MaxSequenceLength, requireMinimum: true, hyper.Objective);
            var validation = job.ValidationFile is null ? null
                : JobData.Load(baseModel, files, job.Project, job.ValidationFile, "validation_file", settings.MaxSequenceLength, requireMinimum: false, hyper.Objective);

            var options = new TrainingOptions(
                Epochs: hyper.NEpochs!.Value,
                BatchSize: hyper.BatchSize!.Value,
                LearningRate: hyper.LearningRate!.Value,
                Seed: job.Seed,
                Schedule: hyper.Scheduler,
                WarmupRatio: hyper.WarmupRatio,
                WeightDecay: hyper.WeightDecay,
                Packing: hyper.Packing,
                MaxLength: Math.Min(settings.MaxSequenceLength, model.Config.MaxPositionEmbeddings),
                EvalEverySteps: hyper.EvalEverySteps ?? 0,
                ActivationCheckpointing: hyper.GradientCheckpointing,
                Beta: hyper.Beta ?? PreferenceLoss.DefaultBeta);
            var trainer = new LoraTrainer(model, parameters, options);

            string? resumeFrom = null;
            if (job.ResumeStep is { } step && Directory.Exists(settings.CheckpointDirectory(job.Id, step)))
                resumeFrom = settings.CheckpointDirectory(job.Id, step);
            var name = FineTunedModelName(job);
            sink = new JobSink(this, job, name, slot.Name, control, watch, resumeFrom is null ? 0 : job.ResumeStep!.Value, hyper.CheckpointEverySteps,
                dir => PeftAdapter.Save(dir, model, hyper.Lora, targets, baseModel.Name));

            var started = new List<JobEventRecord>
            {
                events.Info(job.Id, $"Loaded {baseModel.Name}" + (job.ParentModel is null ? "" : $" with the adapter of {job.ParentModel}")
                                    + $" on {slot.Name} ({dtype}); training {parameters.Sum(p => p.numel())} adapter parameters"),
            };
            if (resumeFrom is not null) started.Add(events.Info(job.Id, $"Resuming from the checkpoint at step {job.ResumeStep}"));
            jobs.Update(job.Id, [JobStatus.Running, JobStatus.Paused], new JobChanges { Stage = JobStage.Training }, started);

            if (control.StopRequested is JobStopReason.Pause or JobStopReason.Shutdown)
            {
                outcome = Stopped(job, control, job.ResumeStep ?? 0); // asked while the model was loading
                return 0;
            }
            var completed = hyper.Objective == TrainingObjective.Preference
                ? trainer.TrainPreferences(training.Pairs, sink, resumeFrom, validation?.Pairs, control.Cancelled)
                : trainer.Train(training.Sequences, sink, resumeFrom, validation?.Sequences, control.Cancelled);
            if (!completed)
            {
                outcome = Stopped(job, control, sink.LastStep);
                return sink.TokensPerSecond;
            }

            // Finalizing: the adapter is written completely before the job says succeeded.
            // A pause that arrives during the last step finds nothing left to pause: the job completes.
            jobs.Update(job.Id, [JobStatus.Running, JobStatus.Paused], new JobChanges { Stage = JobStage.Finalizing }, [events.Info(job.Id, "Training finished; saving the adapter")]);
            Engine.IO.AtomicDirectory.Write(settings.AdapterDirectory(job.Id), dir => PeftAdapter.Save(dir, model, hyper.Lora, targets, baseModel.Name));
            var results = files.CreateGeneratedAsync(job.Project, "step_metrics.csv", FilePurposes.FineTuneResults,
                File.ReadAllBytes(sink.MetricsPath), CancellationToken.None).GetAwaiter().GetResult();
            var succeeded = jobs.Update(job.Id, [JobStatus.Running, JobStatus.Paused], new JobChanges
            {
                Status = JobStatus.Succeeded,
                FineTunedModel = name,
                FinishedAt = time.GetUtcNow().ToUnixTimeSeconds(),
                TrainedTokens = sink.TrainedTokens,
                ResultFiles = JsonSerializer.Serialize(new[] { results.Id }),
                DeviceSeconds = sink.DeviceSeconds,
                Clear = ["stage", "estimated_finish"],
            }, [events.Info(job.Id, $"New fine-tuned model created: {name}"), events.Info(job.Id, "The job has successfully completed")]);
            outcome = succeeded is null ? "cancelled" : "succeeded";
            if (succeeded is null) Directory.Delete(settings.AdapterDirectory(job.Id), recursive: true); // cancelled while finalizing
            if (succeeded is not null) LogSucceeded(logger, job.Id, name, watch.Elapsed.TotalSeconds);
            return sink.TokensPerSecond;
        }
        catch (OperationCanceledException) when (control.StopRequested == JobStopReason.Cancel)
        {
            outcome = "cancelled";
            jobs.Update(job.Id, [JobStatus.Cancelled], new JobChanges { Clear = ["stage"], DeviceSeconds = sink?.DeviceSeconds });
            return sink?.TokensPerSecond ?? 0;
        }
        catch (OutOfDeviceMemoryException e)
        {
            Fail(job, new JobError("out_of_memory", $"{e.Message} (device {slot.Name})", null), sink);
            return 0;
        }
        catch (System.Runtime.InteropServices.ExternalException e) when (OutOfDeviceMemoryException.Matches(e))
        {
            // Outside a training step (the trainer maps those): loading the model, attaching or saving the adapter, on a
            // device whose memory another process or job holds.
            Fail(job, new JobError("out_of_memory",
                $"The device ran out of memory outside a training step (device {slot.Name}): {e.Message.Split('\n')[0]} Another process may hold its memory, or the model does not fit.", null), sink);
            return 0;
        }
        catch (TrainingDataException e)
        {
            Fail(job, new JobError(e.Code, e.Message, e.Param), sink);
            return 0;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogCrashed(logger, e, job.Id);
            Fail(job, new JobError("internal_error", $"gpud hit an unexpected error: {e.Message}", null), sink);
            return 0;
        }
        finally
        {
            metrics.JobDuration.WithLabels(outcome).Observe(watch.Elapsed.TotalSeconds);
            metrics.TokensPerSecond.WithLabels(slot.Name).Set(0);
        }
    }

    private JobRepository Jobs => jobs;

    private FineTuningSettings Settings => settings;

    private FineTuningMetrics Metrics => metrics;

    private JobEvents Events => events;

    private TimeProvider Time => time;

    private DeviceTurns Turns => turns;

    /// <summary>The device's memory in use (all processes), from NVML on CUDA devices; null elsewhere.</summary>
    private long? DeviceMemoryUsed(string device) =>
        device.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(device.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out var index)
            ? backend.Nvml?.Sample(index)?.MemoryUsedBytes
            : null;

    /// <summary><c>ft:{base}:{org}:{suffix}:{id}</c>; the org is the job's project (<c>gpud</c> for the default one).</summary>
    public static string FineTunedModelName(JobRecord job)
    {
        ArgumentNullException.ThrowIfNull(job);
        return $"ft:{job.Model}:{FineTuningJobView.Organization(job.Project)}:{job.Suffix}:{job.Id}";
    }

    private string Stopped(JobRecord job, JobControl control, int step)
    {
        if (control.StopRequested == JobStopReason.Shutdown)
        {
            // Back to the head of the queue, so the job is first to run when gpud starts again.
            jobs.Update(job.Id, [JobStatus.Running], new JobChanges
            {
                Status = JobStatus.Queued,
                Queue = QueuePlacement.Head,
                QueuedAt = time.GetUtcNow().ToUnixTimeMilliseconds(),
                Clear = ["stage", "device", "estimated_finish"],
            }, [events.Info(job.Id, $"gpud is stopping: the job was checkpointed at step {step} and resumes from there when gpud starts again")]);
            LogInterrupted(logger, job.Id, step);
            return "interrupted";
        }
        jobs.Update(job.Id, [JobStatus.Paused], new JobChanges { Clear = ["stage", "device", "estimated_finish"] },
            [events.Info(job.Id, $"Job paused after step {step}; resume continues from there")]);
        return "paused";
    }

    private void Fail(JobRecord job, JobError error, JobSink? sink)
    {
        var failed = jobs.Update(job.Id, [JobStatus.Running, JobStatus.Paused], new JobChanges
        {
            Status = JobStatus.Failed,
            FinishedAt = time.GetUtcNow().ToUnixTimeSeconds(),
            Error = JsonSerializer.Serialize(error, FineTuningJobView.Json),
            DeviceSeconds = sink?.DeviceSeconds,
            Clear = ["stage", "estimated_finish"],
        }, [events.Error(job.Id, $"The job failed: {error.Message}")]);
        if (failed is null) return;
        metrics.Failures.WithLabels(error.Code).Inc();
        LogFailed(logger, job.Id, error.Code, error.Message);
    }

    /// <summary>
    /// What the trainer reports, turned into the job's progress, events, metrics and checkpoints. Progress is written
    /// with each metrics event (at most one per <see cref="FineTuningSettings.EventInterval"/>, the last step always).
    /// </summary>
    private sealed class JobSink : ITrainingSink
    {
        private readonly JobRunner _runner;
        private readonly JobRecord _job;
        private readonly string _name;
        private readonly string _device;
        private readonly DeviceTurns.DeviceLane _turns;
        private readonly JobControl _control;
        private readonly Stopwatch _watch;
        private readonly Action<string> _export;
        private readonly double _baseDeviceSeconds;
        private readonly int _checkpointEvery;
        private TimeSpan? _lastEvent;
        private long _countedTokens;
        private TrainingProgress? _last;

        public JobSink(JobRunner runner, JobRecord job, string name, string device, JobControl control, Stopwatch watch, int resumeStep,
            int checkpointEvery, Action<string> export)
        {
            _checkpointEvery = checkpointEvery;
            _runner = runner;
            _job = job;
            _name = name;
            _device = device;
            _turns = runner.Turns.Lane(device, DeviceWorkload.Training);
            _control = control;
            _watch = watch;
            _export = export;
            _baseDeviceSeconds = job.DeviceSeconds;
            MetricsPath = Path.Combine(runner.Settings.JobDirectory(job.Id), "metrics.csv");
            PrepareMetricsFile(resumeStep);
        }

        public string MetricsPath { get; }

        public int LastStep => _last?.Step ?? 0;

        public long TrainedTokens => _last?.TrainedTokens ?? 0;

        public double TokensPerSecond => _last?.TokensPerSecond ?? 0;

        public double DeviceSeconds => _baseDeviceSeconds + _watch.Elapsed.TotalSeconds;

        public IDisposable BeginStep(int step) => _turns.Take();

        public void OnStep(TrainingProgress p)
        {
            _last = p;
            File.AppendAllText(MetricsPath, string.Create(CultureInfo.InvariantCulture,
                $"{p.Step},{p.TrainLoss:R},{p.TrainAccuracy:R},{p.ValidLoss?.ToString("R", CultureInfo.InvariantCulture)},{p.ValidMeanTokenAccuracy?.ToString("R", CultureInfo.InvariantCulture)}\n"));
            var metrics = _runner.Metrics;
            metrics.Loss.WithLabels(_device).Set(p.TrainLoss);
            metrics.TokensPerSecond.WithLabels(_device).Set(p.TokensPerSecond);
            if (p.TrainedTokens > _countedTokens)
            {
                metrics.TrainedTokens.WithLabels(_device).Inc(p.TrainedTokens - _countedTokens);
                _countedTokens = p.TrainedTokens;
            }

            var now = _watch.Elapsed;
            var evaluated = p.ValidLoss is not null || p.FullValidLoss is not null;
            if (_lastEvent is { } last && now - last < _runner.Settings.EventInterval && p.Step < p.TotalSteps && !evaluated) return;
            _lastEvent = now;
            var progress = new JobProgress(p.Step, p.TotalSteps, p.Epoch, p.TrainLoss, p.TrainAccuracy, p.LearningRate, p.TokensPerSecond,
                p.TrainedTokens, p.Elapsed.TotalSeconds, p.Remaining.TotalSeconds, _runner.DeviceMemoryUsed(_device));
            _runner.Jobs.Update(_job.Id, [JobStatus.Running, JobStatus.Paused], new JobChanges
            {
                Progress = JsonSerializer.Serialize(progress, FineTuningJobView.Json),
                TrainedTokens = p.TrainedTokens,
                EstimatedFinish = (_runner.Time.GetUtcNow() + p.Remaining).ToUnixTimeSeconds(),
                DeviceSeconds = DeviceSeconds,
            }, [_runner.Events.Metrics(_job.Id, p)]);
        }

        public string? CheckpointDirectory(int step, bool endOfEpoch)
        {
            var stopping = _control.StopRequested is JobStopReason.Pause or JobStopReason.Shutdown && step < (_last?.TotalSteps ?? 0);
            return IsVisible(step, endOfEpoch) || stopping ? _runner.Settings.CheckpointDirectory(_job.Id, step) : null;
        }

        public void ExportAdapter(string directory) => _export(directory);

        public void OnCheckpoint(int step, string directory, bool endOfEpoch)
        {
            // The CSV rows up to a resume point must be as durable as its checkpoint: a power cut after the resume step
            // is committed would otherwise cost the results file rows that are never recomputed.
            using (var metrics = new FileStream(MetricsPath, FileMode.Open, FileAccess.Write)) metrics.Flush(flushToDisk: true);
            var visible = IsVisible(step, endOfEpoch);
            var runner = _runner;
            JobCheckpointRecord? checkpoint = null;
            var news = new List<JobEventRecord>();
            if (visible && _last is { } p)
            {
                var data = JobEvents.MetricsData(p);
                checkpoint = new JobCheckpointRecord(ResourceId.New("ftckpt_"), _job.Id, runner.Time.GetUtcNow().ToUnixTimeSeconds(), step,
                    $"{_name}:ckpt-step-{step}", JsonSerializer.Serialize(data));
                news.Add(runner.Events.Info(_job.Id, $"Checkpoint created at step {step}"));
            }
            // Not for a job cancelled meanwhile; a paused one (or one paused and already resumed) records its resume point.
            var recorded = runner.Jobs.Update(_job.Id, [JobStatus.Running, JobStatus.Paused, JobStatus.Queued],
                new JobChanges { ResumeStep = step, DeviceSeconds = DeviceSeconds }, news, checkpoint);
            if (recorded is null) return;
            if (checkpoint is not null) runner.Metrics.Checkpoints.Inc();

            // Keep the newest visible checkpoints and this resume point; remove every other checkpoint directory.
            runner.Jobs.PruneCheckpoints(_job.Id, runner.Settings.KeepCheckpoints, runner.Time.GetUtcNow().ToUnixTimeSeconds());
            var keep = runner.Jobs.LiveCheckpointSteps(_job.Id);
            keep.Add(step);
            var root = Path.GetDirectoryName(directory)!;
            foreach (var old in Directory.EnumerateDirectories(root, "step-*"))
            {
                if (int.TryParse(Path.GetFileName(old)["step-".Length..], CultureInfo.InvariantCulture, out var s) && !keep.Contains(s))
                    Directory.Delete(old, recursive: true);
            }
        }

        /// <summary>Checkpoints a client sees (epoch ends and every N steps); pause and shutdown ones are resume points only.</summary>
        private bool IsVisible(int step, bool endOfEpoch) => endOfEpoch || (_checkpointEvery > 0 && step % _checkpointEvery == 0);

        public bool StopAfterStep(int step) => _control.StopRequested is JobStopReason.Pause or JobStopReason.Shutdown;

        /// <summary>The per-step CSV survives restarts; rows after the resume point are dropped (they will be redone).</summary>
        private void PrepareMetricsFile(int resumeStep)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(MetricsPath)!);
            var header = "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy";
            var kept = new StringBuilder(header).Append('\n');
            if (resumeStep > 0 && File.Exists(MetricsPath))
            {
                foreach (var line in File.ReadLines(MetricsPath).Skip(1))
                {
                    var comma = line.IndexOf(',', StringComparison.Ordinal);
                    if (comma > 0 && int.TryParse(line.AsSpan(0, comma), CultureInfo.InvariantCulture, out var s) && s <= resumeStep)
                        kept.Append(line).Append('\n');
                }
            }
            var temp = MetricsPath + ".tmp";
            using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write))
            {
                file.Write(Encoding.UTF8.GetBytes(kept.ToString()));
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, MetricsPath, overwrite: true);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Fine-tuning job {JobId} succeeded in {Seconds:F1} s: {Model}")]
    private static partial void LogSucceeded(ILogger logger, string jobId, string model, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Fine-tuning job {JobId} checkpointed at step {Step} for shutdown")]
    private static partial void LogInterrupted(ILogger logger, string jobId, int step);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Fine-tuning job {JobId} failed: {Code}: {Message}")]
    private static partial void LogFailed(ILogger logger, string jobId, string code, string message);

    [LoggerMessage(Level = LogLevel.Error, Message = "Fine-tuning job {JobId} failed with an unexpected error")]
    private static partial void LogCrashed(ILogger logger, Exception exception, string jobId);
}
