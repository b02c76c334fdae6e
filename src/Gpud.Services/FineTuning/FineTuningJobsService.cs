using System.Text.Json;
using Gpud.Engine.Training;
using Gpud.Services.Errors;
using Gpud.Services.Files;
using Gpud.Services.Ids;
using Gpud.Services.Models;
using Gpud.Storage.Common;
using Gpud.Storage.FineTuning;
using Microsoft.Extensions.Logging;

namespace Gpud.Services.FineTuning;

/// <summary>
/// OpenAI's fine-tuning jobs API. Creating a job only checks the request and stores it (<c>validating_files</c>);
/// the <see cref="JobValidationWorker"/> reads the files and queues it, and the <see cref="JobScheduler"/> runs it.
/// Every change is committed to SQLite, with its event, before the caller sees it.
/// </summary>
public sealed partial class FineTuningJobsService(
    JobRepository jobs,
    FilesService files,
    ModelCatalog models,
    Inference.ModelResolver resolver,
    JobScheduler scheduler,
    JobValidationWorker validator,
    JobEvents events,
    FineTuningMetrics metrics,
    TimeProvider time,
    ILogger<FineTuningJobsService> logger)
{
    public const int MaxSuffixLength = 64;
    public const int MaxListLimit = 1000;

    public FineTuningJobView Create(string project, JsonElement body)
    {
        if (body.ValueKind != JsonValueKind.Object)
            throw GpudException.Invalid("The request body must be a JSON object.", null);

        var model = RequiredString(body, "model");
        var trainingFile = RequiredString(body, "training_file");
        var validationFile = OptionalString(body, "validation_file");
        var suffix = OptionalString(body, "suffix");
        if (suffix is not null && (suffix.Length is 0 or > MaxSuffixLength || !suffix.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
            throw GpudException.Invalid($"suffix must be 1 to {MaxSuffixLength} characters of letters, digits, '-', '_' or '.' (it becomes part of the model name).", "suffix");
        var seed = Seed(body);
        var metadata = body.TryGetProperty("metadata", out var metadataField) ? RequestFields.Metadata(metadataField) : null;
        if (body.TryGetProperty("integrations", out var integrations)
            && !(integrations.ValueKind == JsonValueKind.Null || integrations.ValueKind == JsonValueKind.Array && integrations.GetArrayLength() == 0))
            throw GpudException.Invalid("integrations are not supported by gpud; watch jobs through their events and /metrics.", "integrations");
        var (hyperparameters, given, path) = Hyperparameters(body);

        // A fine-tuned model (or a checkpoint, or an uploaded adapter) is continued: its adapter is the starting point.
        string? parent = null;
        if (!models.TryGet(model, out var baseModel))
        {
            var served = resolver.Resolve(project, model);
            if (served.AdapterDirectory is null) throw ModelCatalog.NotFound(model);
            (baseModel, parent) = (served.Base, served.Id);
            if (given is { } values && JobHyperparameters.AdapterShapeKeys.FirstOrDefault(k => values.TryGetProperty(k, out _)) is { } fixedKey)
                throw GpudException.Invalid($"{fixedKey} is set by the adapter of {model}, which this job continues; leave it out.", $"{path}.{fixedKey}");
        }
        CheckFile(project, trainingFile, "training_file");
        if (validationFile is not null) CheckFile(project, validationFile, "validation_file");

        var id = ResourceId.New("ftjob-");
        var record = new Storage.FineTuning.JobRecord(id, project, time.GetUtcNow().ToUnixTimeSeconds(), baseModel.Name, trainingFile, validationFile,
            suffix, seed, metadata is null ? null : JsonSerializer.Serialize(metadata), hyperparameters.ToMethodJson(), JobStatus.ValidatingFiles)
        {
            ParentModel = parent,
        };
        jobs.Insert(record, events.Info(id, $"Created fine-tuning job: {id}"),
            events.Info(id, $"Validating training file: {trainingFile}" + (validationFile is null ? "" : $" and validation file: {validationFile}")));
        LogCreated(logger, id, project, baseModel.Name, trainingFile);
        RefreshCounts();
        validator.Wake();
        return View(jobs.Find(project, id)!);
    }

    public FineTuningJobView Get(string project, string id) => View(Find(project, id));

    public (IReadOnlyList<FineTuningJobView> Jobs, bool HasMore) List(string project, int? limit, string? after, IReadOnlyDictionary<string, string>? metadata)
    {
        var take = Limit(limit, 20);
        var page = jobs.List(project, take, after, metadata)
                   ?? throw GpudException.Invalid($"No such fine-tuning job: {after} (the 'after' cursor).", "after");
        var positions = page.Items.Any(j => j.Status == JobStatus.Queued) ? QueuePositions() : null;
        return (page.Items.Select(j => View(j, positions)).ToList(), page.HasMore);
    }

    public FineTuningJobView Cancel(string project, string id)
    {
        var job = Find(project, id);
        var now = time.GetUtcNow().ToUnixTimeSeconds();
        var cancelled = jobs.Update(id, [JobStatus.ValidatingFiles, JobStatus.Queued, JobStatus.Running, JobStatus.Paused],
            new JobChanges { Status = JobStatus.Cancelled, FinishedAt = now, Queue = QueuePlacement.Remove, Clear = ["stage", "estimated_finish"] },
            [events.Info(id, "Fine-tuning job cancelled")]);
        if (cancelled is null) throw InvalidState(jobs.Find(project, id) ?? job, "cancel");
        scheduler.Stop(id, JobStopReason.Cancel);
        scheduler.ReleaseEnded(id);
        LogCancelled(logger, id);
        RefreshCounts();
        scheduler.Wake();
        return View(cancelled);
    }

    public FineTuningJobView Pause(string project, string id)
    {
        var job = Find(project, id);
        if (job.Status == JobStatus.Paused) return View(job);
        var running = job.Status == JobStatus.Running;
        var paused = jobs.Update(id, [JobStatus.Queued, JobStatus.Running],
            new JobChanges { Status = JobStatus.Paused, Queue = QueuePlacement.Remove, Clear = ["estimated_finish"] },
            [events.Info(id, running ? "Pausing: the job writes a checkpoint at the end of its current step" : "Job paused")]);
        if (paused is null) throw InvalidState(jobs.Find(project, id) ?? job, "pause");
        if (running) scheduler.Stop(id, JobStopReason.Pause);
        RefreshCounts();
        scheduler.Wake();
        return View(paused);
    }

    public FineTuningJobView Resume(string project, string id)
    {
        var job = Find(project, id);
        var resumed = jobs.Update(id, [JobStatus.Paused],
            new JobChanges { Status = JobStatus.Queued, Queue = QueuePlacement.Tail, QueuedAt = time.GetUtcNow().ToUnixTimeMilliseconds() },
            [events.Info(id, job.ResumeStep is { } step ? $"Job resumed; it continues from the checkpoint at step {step}" : "Job resumed")]);
        if (resumed is null) throw InvalidState(jobs.Find(project, id) ?? job, "resume");
        RefreshCounts();
        scheduler.Wake();
        return View(jobs.Find(project, id)!);
    }

    public Page<JobEventRecord> Events(string project, string id, int? limit, string? after)
    {
        Find(project, id);
        return jobs.Events(id, Limit(limit, 20), after)
               ?? throw GpudException.Invalid($"No such event of job {id}: {after} (the 'after' cursor).", "after");
    }

    public Page<JobCheckpointRecord> Checkpoints(string project, string id, int? limit, string? after)
    {
        Find(project, id);
        return jobs.Checkpoints(id, Limit(limit, 10), after)
               ?? throw GpudException.Invalid($"No such checkpoint of job {id}: {after} (the 'after' cursor).", "after");
    }

    public void RefreshCounts() => metrics.SetJobCounts(jobs.CountByStatus());

    private Storage.FineTuning.JobRecord Find(string project, string id) =>
        jobs.Find(project, id) ?? throw GpudException.NotFound($"No such fine-tuning job: {id}", "id");

    private FineTuningJobView View(Storage.FineTuning.JobRecord job) =>
        View(job, job.Status == JobStatus.Queued ? QueuePositions() : null);

    /// <summary>Positions come from the database, so they agree with the statuses read; estimated starts from the scheduler.</summary>
    private Dictionary<string, int> QueuePositions()
    {
        var ids = jobs.QueuedIds();
        var positions = new Dictionary<string, int>(ids.Count, StringComparer.Ordinal);
        for (var i = 0; i < ids.Count; i++) positions[ids[i]] = i + 1;
        return positions;
    }

    private FineTuningJobView View(Storage.FineTuning.JobRecord job, Dictionary<string, int>? positions) =>
        job.Status == JobStatus.Queued && positions is not null && positions.TryGetValue(job.Id, out var position)
            ? FineTuningJobView.From(job, position, scheduler.Estimates.EstimatedStarts.TryGetValue(job.Id, out var start) ? start : null)
            : FineTuningJobView.From(job);

    private static GpudException InvalidState(Storage.FineTuning.JobRecord job, string action) => GpudException.Invalid(
        $"Cannot {action} job {job.Id}: its status is '{job.Status}'.", "id", "invalid_job_state");

    private static int Limit(int? limit, int fallback) => RequestFields.ListLimit(limit, fallback, MaxListLimit);

    private void CheckFile(string project, string id, string param)
    {
        Storage.Files.FileRecord file;
        try
        {
            file = files.Get(project, id);
        }
        catch (GpudException e) when (e.Kind == ErrorKind.NotFound)
        {
            throw GpudException.NotFound($"No such File object: {id}", param);
        }
        if (file.Purpose != FilePurposes.FineTune)
            throw GpudException.Invalid($"File {id} has purpose '{file.Purpose}'; fine-tuning needs a file uploaded with purpose 'fine-tune'.", param);
        if (file.Status == "error")
            throw GpudException.Invalid($"File {id} is not valid training data: {file.StatusDetails}", param, "invalid_file_format");
    }

    /// <returns>The hyperparameters, the object the client gave them in (if any) and its path, for error params.</returns>
    private static (JobHyperparameters Values, JsonElement? Given, string Path) Hyperparameters(JsonElement body)
    {
        var hasLegacy = body.TryGetProperty("hyperparameters", out var legacy) && legacy.ValueKind != JsonValueKind.Null;
        JsonElement? given = null;
        var objective = TrainingObjective.Supervised;
        var type = "supervised";
        if (body.TryGetProperty("method", out var method) && method.ValueKind != JsonValueKind.Null)
        {
            if (method.ValueKind != JsonValueKind.Object) throw GpudException.Invalid("method must be an object.", "method");
            type = method.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            switch (type)
            {
                case "supervised":
                    break;
                case "dpo":
                    objective = TrainingObjective.Preference;
                    break;
                case "reinforcement":
                    throw GpudException.Invalid("method.type 'reinforcement' is not supported by gpud; use 'supervised' or 'dpo'.", "method.type");
                case null:
                    throw GpudException.Invalid("Missing required parameter: 'method.type'.", "method.type");
                default:
                    throw GpudException.Invalid($"'{type}' is not one of 'supervised', 'dpo', 'reinforcement' - 'method.type'.", "method.type");
            }
            foreach (var other in (ReadOnlySpan<string>)["supervised", "dpo", "reinforcement"])
            {
                if (other != type && method.TryGetProperty(other, out var stray) && stray.ValueKind != JsonValueKind.Null)
                    throw GpudException.Invalid($"method.{other} does not apply to method type '{type}'.", $"method.{other}");
            }
            if (method.TryGetProperty(type, out var settings) && settings.ValueKind != JsonValueKind.Null)
            {
                if (settings.ValueKind != JsonValueKind.Object) throw GpudException.Invalid($"method.{type} must be an object.", $"method.{type}");
                if (settings.TryGetProperty("hyperparameters", out var h) && h.ValueKind != JsonValueKind.Null) given = h;
            }
        }
        if (hasLegacy && given is not null)
            throw GpudException.Invalid($"Give hyperparameters either in method.{type}.hyperparameters or in the deprecated top-level hyperparameters, not both.", "hyperparameters");
        if (given is { } values) return (JobHyperparameters.Parse(values, $"method.{type}.hyperparameters", allowExtensions: true, objective), values, $"method.{type}.hyperparameters");
        return hasLegacy
            ? (JobHyperparameters.Parse(legacy, "hyperparameters", allowExtensions: false, objective), legacy, "hyperparameters")
            : (new JobHyperparameters { Objective = objective }, null, "hyperparameters");
    }

    private static string RequiredString(JsonElement body, string name)
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
            throw GpudException.Invalid($"Missing required parameter: '{name}'.", name, "missing_required_parameter");
        if (value.ValueKind != JsonValueKind.String || value.GetString() is not { Length: > 0 } text)
            throw GpudException.Invalid($"'{name}' must be a non-empty string.", name, "invalid_type");
        return text;
    }

    private static string? OptionalString(JsonElement body, string name)
    {
        if (!body.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        return value.ValueKind == JsonValueKind.String ? value.GetString() : throw GpudException.Invalid($"'{name}' must be a string.", name, "invalid_type");
    }

    private static long Seed(JsonElement body)
    {
        if (!body.TryGetProperty("seed", out var value) || value.ValueKind == JsonValueKind.Null)
            return Random.Shared.NextInt64(0, int.MaxValue);
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var seed))
            throw GpudException.Invalid("seed must be an integer.", "seed", "invalid_type");
        if (seed is < 0 or > int.MaxValue)
            throw GpudException.Invalid($"seed must be between 0 and {int.MaxValue}.", "seed", "integer_out_of_range");
        return seed;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Fine-tuning job {JobId} created in project {Project}: model {Model}, training file {TrainingFile}")]
    private static partial void LogCreated(ILogger logger, string jobId, string project, string model, string trainingFile);

    [LoggerMessage(Level = LogLevel.Information, Message = "Fine-tuning job {JobId} cancelled")]
    private static partial void LogCancelled(ILogger logger, string jobId);
}
