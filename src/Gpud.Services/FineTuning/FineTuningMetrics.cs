using Prometheus;

namespace Gpud.Services.FineTuning;

/// <summary>
/// Fine-tuning metrics for Prometheus. Labels stay low-cardinality (status, device, error code, outcome): a job id is
/// never a label. The factory is injected so tests and the host decide the registry.
/// </summary>
public sealed class FineTuningMetrics(IMetricFactory factory)
{
    public Gauge Jobs { get; } = factory.CreateGauge("gpud_fine_tuning_jobs", "Fine-tuning jobs by status.", ["status"]);

    public Gauge QueueDepth { get; } = factory.CreateGauge("gpud_fine_tuning_queue_depth", "Jobs waiting for a device.");

    public Histogram QueueWait { get; } = factory.CreateHistogram("gpud_fine_tuning_queue_wait_seconds",
        "Time a job waited in the queue before a device took it.",
        new HistogramConfiguration { Buckets = Histogram.ExponentialBuckets(1, 4, 10) });

    public Histogram JobDuration { get; } = factory.CreateHistogram("gpud_fine_tuning_job_duration_seconds",
        "Wall time of a job's run on a device, by outcome.",
        new HistogramConfiguration { LabelNames = ["outcome"], Buckets = Histogram.ExponentialBuckets(1, 4, 10) });

    public Counter TrainedTokens { get; } = factory.CreateCounter("gpud_fine_tuning_trained_tokens_total", "Tokens trained on (loss tokens), by device.", ["device"]);

    public Gauge TokensPerSecond { get; } = factory.CreateGauge("gpud_training_tokens_per_second", "Training throughput (all tokens processed per second) of the job running on a device.", ["device"]);

    public Gauge Loss { get; } = factory.CreateGauge("gpud_training_loss", "Training loss at the last step of the job running on a device.", ["device"]);

    public Gauge DeviceBusy { get; } = factory.CreateGauge("gpud_fine_tuning_device_busy", "1 while a device runs a fine-tuning job.", ["device"]);

    public Counter Checkpoints { get; } = factory.CreateCounter("gpud_fine_tuning_checkpoints_total", "Checkpoints written.");

    public Counter Failures { get; } = factory.CreateCounter("gpud_fine_tuning_job_failures_total", "Failed jobs by error code.", ["code"]);

    /// <summary>Sets the by-status gauge from a full count (so every status is exported, zeros included).</summary>
    public void SetJobCounts(IReadOnlyDictionary<string, long> counts)
    {
        ArgumentNullException.ThrowIfNull(counts);
        foreach (var status in JobStatus.All) Jobs.WithLabels(status).Set(counts.GetValueOrDefault(status));
        QueueDepth.Set(counts.GetValueOrDefault(JobStatus.Queued));
    }
}
