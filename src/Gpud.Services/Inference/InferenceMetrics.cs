using Prometheus;

namespace Gpud.Services.Inference;

/// <summary>
/// Serving metrics with vLLM's names under <c>gpud_</c> (vllm:num_requests_running → gpud_num_requests_running, …), so
/// vLLM dashboards port by renaming. Labelled by base model only: adapter names are unbounded and never a label.
/// </summary>
public sealed class InferenceMetrics(IMetricFactory factory)
{
    private static readonly double[] LatencyBuckets = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];

    public Gauge Running { get; } = factory.CreateGauge("gpud_num_requests_running", "Sequences in the running batch.", ["model_name"]);

    public Gauge Waiting { get; } = factory.CreateGauge("gpud_num_requests_waiting", "Requests waiting for a batch row or their adapter.", ["model_name"]);

    public Histogram TimeToFirstToken { get; } = factory.CreateHistogram("gpud_time_to_first_token_seconds", "Time from arrival to the first generated token.",
        new HistogramConfiguration { LabelNames = ["model_name"], Buckets = LatencyBuckets });

    public Histogram InterTokenLatency { get; } = factory.CreateHistogram("gpud_inter_token_latency_seconds", "Time between two tokens of one sequence.",
        new HistogramConfiguration { LabelNames = ["model_name"], Buckets = LatencyBuckets });

    public Histogram RequestDuration { get; } = factory.CreateHistogram("gpud_e2e_request_latency_seconds", "Time from arrival to the last token.",
        new HistogramConfiguration { LabelNames = ["model_name"], Buckets = LatencyBuckets });

    public Counter PromptTokens { get; } = factory.CreateCounter("gpud_prompt_tokens_total", "Prompt tokens prefilled.", ["model_name"]);

    public Counter ForwardPasses { get; } = factory.CreateCounter("gpud_forward_passes_total",
        "Forward passes of the serving loop by kind: 'decode' (one token per running sequence), 'prefill' (prompts alone), "
        + "'mixed' (prompts that joined a decode step).", ["model_name", "kind"]);

    public Counter GenerationTokens { get; } = factory.CreateCounter("gpud_generation_tokens_total", "Tokens generated.", ["model_name"]);

    public Counter Requests { get; } = factory.CreateCounter("gpud_request_success_total", "Finished requests by finish reason.", ["model_name", "finished_reason"]);

    public Gauge KvCacheUsage { get; } = factory.CreateGauge("gpud_kv_cache_usage_perc", "Fraction of the KV cache's token positions in use (0-1).", ["model_name"]);

    public Counter ModelLoads { get; } = factory.CreateCounter("gpud_model_loads_total", "Base models loaded onto a device for serving.", ["model_name"]);

    public Counter AdapterLoads { get; } = factory.CreateCounter("gpud_adapter_loads_total",
        "Adapter loads by tier: 'host' reads from disk, 'device' copies into a device slot.", ["tier"]);

    public Counter AdapterHits { get; } = factory.CreateCounter("gpud_adapter_cache_hits_total", "Adapter requests served from a tier without loading.", ["tier"]);

    public Counter Rejected { get; } = factory.CreateCounter("gpud_requests_rejected_total", "Requests refused with 429 because the waiting queue was full.", ["model_name"]);
}
