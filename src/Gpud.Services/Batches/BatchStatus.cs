namespace Gpud.Services.Batches;

/// <summary>A batch's statuses, as OpenAI names them.</summary>
public static class BatchStatus
{
    public const string Validating = "validating";
    public const string Failed = "failed";
    public const string InProgress = "in_progress";
    public const string Finalizing = "finalizing";
    public const string Completed = "completed";
    public const string Expired = "expired";
    public const string Cancelling = "cancelling";
    public const string Cancelled = "cancelled";

    /// <summary>Statuses the runner still has work in.</summary>
    public static readonly string[] Unfinished = [Validating, InProgress, Finalizing, Cancelling];
}
