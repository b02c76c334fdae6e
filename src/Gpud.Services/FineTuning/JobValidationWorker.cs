using System.Text.Json;
using Gpud.Engine.Training;
using Gpud.Services.Files;
using Gpud.Services.Models;
using Gpud.Storage.FineTuning;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Gpud.Services.FineTuning;

/// <summary>
/// The <c>validating_files</c> stage: reads each new job's files with its model's tokenizer and chat template, one job
/// at a time in creation order (so the queue keeps creation order), resolves the "auto" hyperparameters from what it
/// found, and queues the job at the tail, or fails it with OpenAI's data error codes.
/// </summary>
public sealed partial class JobValidationWorker(
    JobRepository jobs,
    FilesService files,
    ModelCatalog models,
    Inference.ModelResolver resolver,
    FineTuningSettings settings,
    FinishedJobFiles finished,
    JobEvents events,
    FineTuningMetrics metrics,
    TimeProvider time,
    ILogger<JobValidationWorker> logger) : BackgroundService
{
    private readonly SemaphoreSlim _wake = new(0);

    public void Wake()
    {
        if (_wake.CurrentCount == 0) _wake.Release();
    }

    /// <summary>Raised after a job left validation (queued or failed), so the scheduler can look at the queue.</summary>
    public event Action? Validated;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        while (!stoppingToken.IsCancellationRequested)
        {
            while (models.Loaded && jobs.FirstWithStatus(JobStatus.ValidatingFiles) is { } job)
            {
                await Task.Run(() => Validate(job), stoppingToken);
                Validated?.Invoke();
                if (stoppingToken.IsCancellationRequested) return;
            }
            // Woken by new jobs; the timeout also covers the model catalog finishing its start-up check.
            try
            {
                await _wake.WaitAsync(models.Loaded ? TimeSpan.FromSeconds(5) : TimeSpan.FromMilliseconds(100), stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Reads the files of one job and queues or fails it. Never throws for the job's own faults.</summary>
    internal void Validate(JobRecord job)
    {
        try
        {
            var model = models.Get(job.Model);
            var requested = JobHyperparameters.FromMethodJson(job.Method);
            var training = JobData.Load(model, files, job.Project, job.TrainingFile, "training_file", settings.MaxSequenceLength, requireMinimum: true, requested.Objective);
            var validation = job.ValidationFile is null ? null
                : JobData.Load(model, files, job.Project, job.ValidationFile, "validation_file", settings.MaxSequenceLength, requireMinimum: false, requested.Objective);

            if (job.ParentModel is { } parent) requested = Continue(job, parent, model, requested);
            var resolved = requested.Resolve(training.Examples, training.Items, model.Config.ParameterCount, validation is not null);
            var totalSteps = resolved.NEpochs!.Value * (int)Math.Ceiling(training.Items / (double)resolved.BatchSize!.Value);
            var dataset = new JobDataset(training.Examples, training.Sequences.Count, training.TotalTokens, training.TrainedTokens,
                training.TruncatedExamples, validation?.Examples, totalSteps);

            var news = new List<JobEventRecord>();
            if (job.ParentModel is not null)
                news.Add(events.Info(job.Id, $"Continuing {job.ParentModel}: its rank-{resolved.LoraR} adapter on {string.Join(", ", resolved.TargetModules)} is the starting point"));
            news.Add(events.Info(job.Id, $"Files validated: {training.Examples} training examples ({training.TotalTokens} tokens, {training.TrainedTokens} trained)"
                                + (validation is null ? "" : $", {validation.Examples} validation examples")
                                + (resolved.Objective == TrainingObjective.Preference ? $"; DPO with beta {resolved.Beta?.ToString(System.Globalization.CultureInfo.InvariantCulture)}" : "")
                                + $"; {resolved.NEpochs} epochs of batch size {resolved.BatchSize}, {totalSteps} steps"));
            if (training.TruncatedExamples > 0)
                news.Add(events.Warn(job.Id, $"{training.TruncatedExamples} training examples are longer than {Math.Min(settings.MaxSequenceLength, model.Config.MaxPositionEmbeddings)} tokens and were truncated"));
            if (validation is { TruncatedExamples: > 0 })
                news.Add(events.Warn(job.Id, $"{validation.TruncatedExamples} validation examples were truncated"));
            news.Add(events.Info(job.Id, $"Files validated, moving job to queued state (position {jobs.QueuedIds().Count + 1})"));

            var queued = jobs.Update(job.Id, [JobStatus.ValidatingFiles], new JobChanges
            {
                Status = JobStatus.Queued,
                Queue = QueuePlacement.Tail,
                QueuedAt = time.GetUtcNow().ToUnixTimeMilliseconds(),
                Method = resolved.ToMethodJson(),
                Dataset = JsonSerializer.Serialize(dataset, FineTuningJobView.Json),
            }, news);
            if (queued is not null) LogQueued(logger, job.Id, training.Examples, totalSteps);
        }
        catch (TrainingDataException e)
        {
            Fail(job, new JobError(e.Code, e.Message, e.Param));
        }
        catch (Errors.GpudException e)
        {
            // The model or a file went away between the request and validation.
            Fail(job, new JobError(e.Code ?? "invalid_request", e.Message, e.Param));
        }
        catch (Exception e) when (e is IOException or JsonException or InvalidDataException)
        {
            LogUnreadable(logger, e, job.Id);
            Fail(job, new JobError("invalid_training_file", $"The training data could not be read: {e.Message}", "training_file"));
        }
        finished.Release(job.Id); // failed, or cancelled meanwhile: the parent copy is not needed
        metrics.SetJobCounts(jobs.CountByStatus());
    }

    /// <summary>
    /// Copies the adapter a job continues into the job's own directory (atomically; a restart mid-copy starts over) and
    /// takes its shape into the hyperparameters.
    /// </summary>
    private JobHyperparameters Continue(JobRecord job, string parent, BaseModel model, JobHyperparameters requested)
    {
        var copy = settings.ParentAdapterDirectory(job.Id);
        if (!Directory.Exists(copy))
        {
            var source = resolver.TryResolve(job.Project, parent)?.AdapterDirectory
                         ?? throw Errors.GpudException.NotFound($"The model '{parent}' this job continues no longer exists.", "model", "model_not_found");
            Engine.IO.AtomicDirectory.Write(copy, temp =>
            {
                foreach (var name in new[] { Engine.Lora.PeftAdapter.ConfigFile, Engine.Lora.PeftAdapter.WeightsFile })
                    File.Copy(Path.Combine(source, name), Path.Combine(temp, name));
            });
        }
        try
        {
            using var weights = Engine.Lora.PeftAdapter.Read(copy, model.Config);
            if (weights.Settings.Rank > JobHyperparameters.MaxRank)
                throw Errors.GpudException.Invalid($"The adapter of {parent} has rank {weights.Settings.Rank}; gpud trains ranks up to {JobHyperparameters.MaxRank}.", "model", "invalid_model");
            return requested.WithAdapterShape(weights.Settings, weights.TargetModules);
        }
        catch (Engine.Models.ModelLoadException e)
        {
            throw Errors.GpudException.Invalid($"The adapter of {parent} cannot be trained further: {e.Message}", "model", "invalid_model");
        }
    }

    private void Fail(JobRecord job, JobError error)
    {
        var failed = jobs.Update(job.Id, [JobStatus.ValidatingFiles], new JobChanges
        {
            Status = JobStatus.Failed,
            FinishedAt = time.GetUtcNow().ToUnixTimeSeconds(),
            Error = JsonSerializer.Serialize(error, FineTuningJobView.Json),
        }, [events.Error(job.Id, $"The job failed: {error.Message}")]);
        if (failed is null) return;
        metrics.Failures.WithLabels(error.Code).Inc();
        LogFailed(logger, job.Id, error.Code, error.Message);
    }

    public override void Dispose()
    {
        _wake.Dispose();
        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Fine-tuning job {JobId} validated and queued: {Examples} examples, {Steps} steps")]
    private static partial void LogQueued(ILogger logger, string jobId, int examples, int steps);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Fine-tuning job {JobId} failed validation: {Code}: {Message}")]
    private static partial void LogFailed(ILogger logger, string jobId, string code, string message);

    [LoggerMessage(Level = LogLevel.Error, Message = "The files of fine-tuning job {JobId} could not be read")]
    private static partial void LogUnreadable(ILogger logger, Exception exception, string jobId);
}
