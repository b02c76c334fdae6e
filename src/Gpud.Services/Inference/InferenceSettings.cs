namespace Gpud.Services.Inference;

/// <summary>Host-agnostic settings of the serving side (<c>Gpud:Inference</c>).</summary>
/// <param name="Device">Where base models are served; null: the first CUDA device that fine-tuning does not use (else
/// the first CUDA device, shared), or the CPU when there is no GPU.</param>
/// <param name="MaxBatchSize">Sequences decoded together per model (rows of the KV cache).</param>
/// <param name="MaxModelLength">Tokens per sequence, prompt plus completion (capped by the model's own context).</param>
/// <param name="MaxWaitingRequests">Requests that may wait for a row before new ones get 429.</param>
/// <param name="MaxGpuAdapters">Adapters resident on the device at once (slots of the adapter pool).</param>
/// <param name="MaxHostAdapters">Adapters kept in host memory, ready to copy to the device.</param>
/// <param name="MaxLoraRank">The largest rank a served adapter may have (the pool's rank dimension).</param>
/// <param name="MaxPrefillTokens">Prompt tokens prefilled together in one forward pass, counted padded to the longest
/// prompt (vLLM's max_num_batched_tokens); a longer prompt is prefilled alone.</param>
public sealed record InferenceSettings(
    string? Device = null,
    int MaxBatchSize = 32,
    int MaxModelLength = 4096,
    int MaxWaitingRequests = 256,
    int MaxGpuAdapters = 8,
    int MaxHostAdapters = 32,
    int MaxLoraRank = 64,
    int MaxPrefillTokens = 2048);
