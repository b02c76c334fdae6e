using Microsoft.Extensions.Options;

namespace Gpud.Hosting;

/// <summary>One entry of <c>Gpud:Adapters:&lt;name&gt;</c>: a PEFT adapter directory trained elsewhere, served as <c>name</c>.</summary>
public sealed class AdapterEntryOptions
{
    /// <summary>The directory holding adapter_config.json and adapter_model.safetensors.</summary>
    public string Path { get; set; } = "";

    /// <summary>The base model (a <c>Gpud:Models</c> name or gpud-tiny) it applies to.</summary>
    public string BaseModel { get; set; } = "";
}

/// <summary><c>Gpud:Inference</c> (serving limits) and <c>Gpud:Adapters</c> (adapters registered from disk).</summary>
public sealed class InferenceOptions
{
    public InferenceSection Inference { get; set; } = new();

    public Dictionary<string, AdapterEntryOptions> Adapters { get; set; } = new(StringComparer.Ordinal);

    public sealed class InferenceSection
    {
        /// <summary>Where base models are served (<c>cpu</c>, <c>cuda:N</c>); unset: a GPU fine-tuning does not use, else a shared one, else the CPU.</summary>
        public string? Device { get; set; }

        /// <summary>Sequences decoded together per base model.</summary>
        public int MaxBatchSize { get; set; } = 32;

        /// <summary>Tokens per sequence, prompt plus completion (the model's own context caps it).</summary>
        public int MaxModelLength { get; set; } = 4096;

        /// <summary>Requests that may wait for a batch row before new ones are answered 429.</summary>
        public int MaxWaitingRequests { get; set; } = 256;

        /// <summary>Adapters resident on the device at once.</summary>
        public int MaxGpuAdapters { get; set; } = 8;

        /// <summary>Adapters kept in host memory.</summary>
        public int MaxHostAdapters { get; set; } = 32;

        /// <summary>The largest LoRA rank served.</summary>
        public int MaxLoraRank { get; set; } = 64;

        /// <summary>Prompt tokens (padded to the longest) prefilled together in one forward pass.</summary>
        public int MaxPrefillTokens { get; set; } = 2048;

        /// <summary>Days a stored response (the Responses API) is kept, as OpenAI keeps them; 0: until deleted.</summary>
        public int StoredResponseDays { get; set; } = 30;

        /// <summary>Requests of a Batch API batch in flight at once (each waits behind interactive requests for a row).</summary>
        public int BatchRequestsInFlight { get; set; } = 16;
    }
}

internal sealed class InferenceOptionsValidator : IValidateOptions<InferenceOptions>
{
    public ValidateOptionsResult Validate(string? name, InferenceOptions options)
    {
        var failures = new List<string>();
        var s = options.Inference;
        void Range(string key, int value, int min, int max)
        {
            if (value < min || value > max) failures.Add($"Gpud:Inference:{key} must be between {min} and {max} (got {value}).");
        }
        Range(nameof(s.MaxBatchSize), s.MaxBatchSize, 1, 1024);
        Range(nameof(s.MaxModelLength), s.MaxModelLength, 16, 1 << 20);
        Range(nameof(s.MaxWaitingRequests), s.MaxWaitingRequests, 1, 1_000_000);
        Range(nameof(s.MaxGpuAdapters), s.MaxGpuAdapters, 1, 1024);
        Range(nameof(s.MaxHostAdapters), s.MaxHostAdapters, 1, 100_000);
        Range(nameof(s.MaxLoraRank), s.MaxLoraRank, 1, 1024);
        Range(nameof(s.MaxPrefillTokens), s.MaxPrefillTokens, 1, 1 << 24);
        Range(nameof(s.StoredResponseDays), s.StoredResponseDays, 0, 36_500);
        Range(nameof(s.BatchRequestsInFlight), s.BatchRequestsInFlight, 1, 100_000);
        if (s.Device is { } device && !Engine.Compute.ComputeDevice.IsValidId(device))
            failures.Add($"Gpud:Inference:Device must be 'cpu' or 'cuda:N' (got '{device}').");
        foreach (var (adapter, entry) in options.Adapters)
        {
            if (!Services.Inference.ServedModel.IsValidAdapterName(adapter))
                failures.Add($"Gpud:Adapters:{adapter}: {Services.Inference.ServedModel.AdapterNameRule}.");
            if (string.IsNullOrWhiteSpace(entry.Path)) failures.Add($"Gpud:Adapters:{adapter}:Path must name a PEFT adapter directory.");
            if (string.IsNullOrWhiteSpace(entry.BaseModel)) failures.Add($"Gpud:Adapters:{adapter}:BaseModel must name the model it applies to.");
        }
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
