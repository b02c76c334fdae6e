using Prometheus;

namespace Gpud.Services.Batches;

/// <summary>Batch API metrics for Prometheus (the endpoint and outcome label a request; a batch id never does).</summary>
public sealed class BatchMetrics(IMetricFactory factory)
{
    public Counter Requests { get; } = factory.CreateCounter("gpud_batch_requests_total", "Batch API requests answered, by endpoint and outcome.", ["endpoint", "outcome"]);

    public Counter Batches { get; } = factory.CreateCounter("gpud_batches_total", "Batches that ended, by status.", ["status"]);
}
