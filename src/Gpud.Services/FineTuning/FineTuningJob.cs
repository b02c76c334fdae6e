using System.Text.Json;
using Gpud.Storage.FineTuning;

namespace Gpud.Services.FineTuning;

/// <summary>OpenAI's job statuses, plus <c>paused</c>.</summary>
public static class JobStatus
{
    public const string ValidatingFiles = "validating_files";
    public const string Queued = "queued";
    public const string Running = "running";
    public const string Paused = "paused";
    public const string Succeeded = "succeeded";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";

    public static IReadOnlyList<string> All { get; } = [ValidatingFiles, Queued, Running, Paused, Succeeded, Failed, Cancelled];

    public static bool IsFinished(string status) => status is Succeeded or Failed or Cancelled;
}

/// <summary>What a job is doing while it runs (gpud extension <c>stage</c>).</summary>
public static class JobStage
{
    public const string LoadingModel = "loading_model";
    public const string Training = "training";
    public const string Finalizing = "finalizing";
}

/// <summary>A device fine-tuning jobs run on, one job at a time, with its optional hourly price (for the cost estimate).</summary>
public sealed record DeviceSlotDefinition(string Name, double? HourlyPrice = null);

/// <summary>Host-agnostic settings of the fine-tuning service.</summary>
/// <param name="DataDir">Checkpoints go under <c>jobs/</c>, finished adapters under <c>adapters/</c>.</param>
/// <param name="KeepCheckpoints">How many visible checkpoints a job keeps (OpenAI keeps the last 3).</param>
/// <param name="MaxSequenceLength">Examples are truncated to this many tokens (or the model's context, if shorter).</param>
/// <param name="MetricsEventInterval">At most one metrics event per interval (the last step always gets one).</param>
public sealed record FineTuningSettings(
    string DataDir,
    IReadOnlyList<DeviceSlotDefinition> Devices,
    int KeepCheckpoints = 3,
    int MaxSequenceLength = 2048,
    TimeSpan? MetricsEventInterval = null)
{
    public TimeSpan EventInterval => MetricsEventInterval ?? TimeSpan.FromSeconds(1);

    public string JobDirectory(string jobId) => Path.Combine(DataDir, "jobs", jobId);

    public string CheckpointDirectory(string jobId, int step) => Path.Combine(JobDirectory(jobId), "checkpoints", $"step-{step}");

    public string AdapterDirectory(string jobId) => Path.Combine(DataDir, "adapters", jobId);

    /// <summary>A continuing job's copy of the adapter it starts from, taken at validation: deleting the parent later
    /// (or its checkpoint being pruned) cannot pull it from under a queued or resumed job.</summary>
    public string ParentAdapterDirectory(string jobId) => Path.Combine(JobDirectory(jobId), "parent");
}

/// <summary>A job error as OpenAI reports it.</summary>
public sealed record JobError(string Code, string Message, string? Param);

/// <summary>Where a running job is (gpud extension <c>progress</c>).</summary>
public sealed record JobProgress(
    int Step,
    int TotalSteps,
    double Epoch,
    double TrainLoss,
    double TrainMeanTokenAccuracy,
    double LearningRate,
    double TokensPerSecond,
    long TrainedTokens,
    double ElapsedSeconds,
    double RemainingSeconds,
    long? DeviceMemoryUsedBytes);

/// <summary>What a job's device time costs at its device's configured hourly price (an estimate, not a bill).</summary>
public sealed record JobCost(double HourlyPrice, double DeviceHours, double Accrued, double? EstimatedTotal);

/// <summary>What validating the files found (gpud extension <c>dataset</c>).</summary>
public sealed record JobDataset(int Examples, int Sequences, long Tokens, long TrainedTokens, int TruncatedExamples, int? ValidationExamples, int TotalSteps);

/// <summary>A job as the API shows it: the stored row, decoded, plus what only the live queue knows.</summary>
public sealed record FineTuningJobView(
    JobRecord Record,
    JobHyperparameters Hyperparameters,
    IReadOnlyDictionary<string, string>? Metadata,
    JobError? Error,
    IReadOnlyList<string> ResultFiles,
    JobProgress? Progress,
    JobDataset? Dataset,
    JobCost? Cost,
    int? QueuePosition,
    long? EstimatedStart)
{
    internal static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>The <c>organization_id</c> (and the org in model names): the job's project, <c>gpud</c> for the default one.</summary>
    public static string Organization(string project) => project == Projects.Project.Default ? "gpud" : project;

    public static FineTuningJobView From(JobRecord record, int? queuePosition = null, long? estimatedStart = null)
    {
        ArgumentNullException.ThrowIfNull(record);
        var hyperparameters = JobHyperparameters.FromMethodJson(record.Method);
        var progress = record.Progress is null ? null : JsonSerializer.Deserialize<JobProgress>(record.Progress, Json);
        var dataset = record.Dataset is null ? null : JsonSerializer.Deserialize<JobDataset>(record.Dataset, Json);
        JobCost? cost = null;
        if (record.HourlyPrice is { } price)
        {
            var hours = record.DeviceSeconds / 3600;
            double? total = JobStatus.IsFinished(record.Status) ? price * hours
                : progress is { Step: > 0 } p ? price * hours * p.TotalSteps / p.Step : null;
            cost = new JobCost(price, hours, price * hours, total);
        }
        return new FineTuningJobView(
            record,
            hyperparameters,
            record.Metadata is null ? null : JsonSerializer.Deserialize<Dictionary<string, string>>(record.Metadata),
            record.Error is null ? null : JsonSerializer.Deserialize<JobError>(record.Error, Json),
            record.ResultFiles is null ? [] : JsonSerializer.Deserialize<List<string>>(record.ResultFiles) ?? [],
            progress,
            dataset,
            cost,
            queuePosition,
            estimatedStart);
    }
}
