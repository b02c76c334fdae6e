namespace Gpud.Storage.FineTuning;

/// <summary>
/// A fine-tuning job row. JSON-valued columns (<see cref="Metadata"/>, <see cref="Method"/>, <see cref="Error"/>,
/// <see cref="ResultFiles"/>, <see cref="Progress"/>, <see cref="Dataset"/>) are stored as text the service layer owns.
/// </summary>
/// <param name="QueueOrder">The job's place in the FIFO queue while it is <c>queued</c>; null otherwise.</param>
/// <param name="DeviceSeconds">Device time the job has used so far, across restarts (for the cost estimate).</param>
/// <param name="ResumeStep">The step of the last trainer checkpoint a restart resumes from.</param>
/// <param name="Model">The base model the job trains on.</param>
/// <param name="ParentModel">The fine-tuned model (or adapter) the job continues training, as the client named it; null
/// when it starts a new adapter on <paramref name="Model"/>.</param>
public sealed record JobRecord(
    string Id,
    string Project,
    long CreatedAt,
    string Model,
    string TrainingFile,
    string? ValidationFile,
    string? Suffix,
    long Seed,
    string? Metadata,
    string Method,
    string Status,
    long? QueueOrder = null,
    long? QueuedAt = null,
    long? StartedAt = null,
    string? Error = null,
    string? FineTunedModel = null,
    long? FinishedAt = null,
    long? TrainedTokens = null,
    string? ResultFiles = null,
    long? EstimatedFinish = null,
    string? Device = null,
    string? Stage = null,
    string? Progress = null,
    double DeviceSeconds = 0,
    double? HourlyPrice = null,
    int? ResumeStep = null,
    string? Dataset = null,
    long? ModelDeletedAt = null,
    string? ParentModel = null);

/// <summary>A job event: a stage message, a warning, an error, or per-step <c>metrics</c>.</summary>
public sealed record JobEventRecord(string Id, string JobId, long CreatedAt, string Level, string Message, string Type, string? Data);

/// <summary>A checkpoint a client can see (and later call as <c>ft:…:ckpt-step-N</c>).</summary>
public sealed record JobCheckpointRecord(string Id, string JobId, long CreatedAt, int StepNumber, string FineTunedModelCheckpoint, string Metrics);

/// <summary>
/// Column changes for <see cref="JobRepository.Update"/>. Only the set properties are written; <see cref="Clear"/>
/// names nullable columns to set to NULL.
/// </summary>
public sealed record JobChanges
{
    public string? Status { get; init; }
    public string? Method { get; init; }
    public string? Error { get; init; }
    public string? FineTunedModel { get; init; }
    public long? FinishedAt { get; init; }
    public long? StartedAt { get; init; }
    public long? TrainedTokens { get; init; }
    public string? ResultFiles { get; init; }
    public long? EstimatedFinish { get; init; }
    public string? Device { get; init; }
    public string? Stage { get; init; }
    public string? Progress { get; init; }
    public double? DeviceSeconds { get; init; }
    public double? HourlyPrice { get; init; }
    public int? ResumeStep { get; init; }
    public string? Dataset { get; init; }

    /// <summary>When the job (re-)entered the queue, in unix milliseconds (for the queue-wait histogram).</summary>
    public long? QueuedAt { get; init; }

    /// <summary>Put the job at the tail (<see cref="QueuePlacement.Tail"/>) or head of the queue, or take it out.</summary>
    public QueuePlacement? Queue { get; init; }

    public IReadOnlyCollection<string> Clear { get; init; } = [];
}

public enum QueuePlacement
{
    Tail,
    Head,
    Remove,
}
