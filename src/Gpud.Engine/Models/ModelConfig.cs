using System.Text.Json;

namespace Gpud.Engine.Models;

/// <summary>The decoder families gpud runs. All are Llama-shaped; they differ in biases, defaults and Qwen3's q/k norms.</summary>
public enum ModelArchitecture
{
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
}

/// <summary>RoPE frequency scaling from <c>rope_scaling</c> (Hugging Face <c>rope_type</c>).</summary>
/// <param name="Type"><c>default</c>, <c>linear</c> or <c>llama3</c>.</param>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings);

/// <summary>
/// A Hugging Face <c>config.json</c> for a Llama-family causal LM, with the defaults Hugging Face applies when a key is
/// absent. Only what the forward pass needs is kept; unknown keys are ignored as transformers ignores them.
/// </summary>
public sealed record ModelConfig(
    ModelArchitecture Architecture,
    int VocabSize,
    int HiddenSize,
    int IntermediateSize,
    int NumLayers,
    int NumHeads,
    int NumKeyValueHeads,
    int HeadDim,
    double RmsNormEps,
    double RopeTheta,
    RopeScaling? RopeScaling,
    int MaxPositionEmbeddings,
    bool TieWordEmbeddings,
    bool QkvBias,
    bool OutputBias,
    bool MlpBias,
    int? BosTokenId,
    IReadOnlyList<int> EosTokenIds,
    string? TorchDtype)
{
    /// <summary>Qwen3 normalises each head's queries and keys (RMSNorm over head_dim, <c>q_norm</c>/<c>k_norm</c>) before RoPE.</summary>
    public bool QkNorm => Architecture == ModelArchitecture.Qwen3;

    /// <summary>
    /// Mistral's sliding-window attention (<c>sliding_window</c>, Mistral 7B v0.1: 4096): a query at position p sees the
    /// keys at p − window + 1 .. p, in every layer. Null for full causal attention.
    /// </summary>
    public int? SlidingWindow { get; init; }

    /// <summary>Parameters of the frozen base, for learning-rate and MFU figures.</summary>
    public long ParameterCount
    {
        get
        {
            long attention = (long)HiddenSize * HeadDim * (NumHeads * 2 + NumKeyValueHeads * 2);
            long mlp = 3L * HiddenSize * IntermediateSize;
            long perLayer = attention + mlp + 2L * HiddenSize + (QkNorm ? 2L * HeadDim : 0);
            long embeddings = (long)VocabSize * HiddenSize * (TieWordEmbeddings ? 1 : 2);
            return perLayer * NumLayers + embeddings + HiddenSize;
        }
    }

    public static ModelConfig Load(string directory)
    {
        var path = Path.Combine(directory, "config.json");
        if (!File.Exists(path)) throw new ModelLoadException($"{path} does not exist.");
        ModelConfig config;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            config = Parse(document.RootElement, path);
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{path} is not valid JSON: {e.Message}", e);
        }

        // transformers' generate() stops at generation_config.json's eos_token_id (Qwen2.5 and Llama 3 instruct models
        // list their end-of-turn token there), and so does vLLM: its tokens join config.json's.
        var generation = Path.Combine(directory, "generation_config.json");
        if (!File.Exists(generation)) return config;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(generation));
            if (document.RootElement.ValueKind != JsonValueKind.Object) throw new ModelLoadException($"{generation}: expected a JSON object.");
            return config with { EosTokenIds = config.EosTokenIds.Union(ParseTokenIds(document.RootElement, "eos_token_id", generation)).ToList() };
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{generation} is not valid JSON: {e.Message}", e);
        }
    }

    public static ModelConfig Parse(JsonElement root, string source = "config.json")
    {
        if (root.ValueKind != JsonValueKind.Object) throw new ModelLoadException($"{source}: expected a JSON object.");
        var architecture = ParseArchitecture(root, source);

        int Int(string key, int? fallback = null)
        {
            if (root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i)) return i;
            if (root.TryGetProperty(key, out v) && v.ValueKind != JsonValueKind.Null)
                throw new ModelLoadException($"{source}: '{key}' must be an integer.");
            return fallback ?? throw new ModelLoadException($"{source}: '{key}' is missing.");
        }

        double Double(string key, double fallback) =>
            root.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : fallback;

        bool Bool(string key, bool fallback) => root.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False
            ? v.GetBoolean()
            : fallback;

        var hidden = Int("hidden_size");
        var heads = Int("num_attention_heads");
        var kvHeads = Int("num_key_value_heads", heads);
        var headDim = Int("head_dim", hidden / heads);
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0)
            throw new ModelLoadException($"{source}: num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kvHeads}).");
        if (headDim % 2 != 0) throw new ModelLoadException($"{source}: head_dim ({headDim}) must be even for rotary embeddings.");

        var attentionBias = Bool("attention_bias", false);
        int? slidingWindow = null;
        if (architecture == ModelArchitecture.Mistral)
        {
            // As MistralConfig: absent means its default, 4096; null turns it off (Mistral v0.2 and later).
            slidingWindow = root.TryGetProperty("sliding_window", out var window) ? (window.ValueKind == JsonValueKind.Null ? null : Int("sliding_window")) : 4096;
            if (slidingWindow <= 0) throw new ModelLoadException($"{source}: 'sliding_window' must be positive or null.");
        }
        else if (Bool("use_sliding_window", false))
        {
            // Qwen2/Qwen3 window only the layers from max_window_layers on; no released checkpoint turns it on.
            throw new ModelLoadException($"{source}: 'use_sliding_window' is true; gpud supports sliding-window attention for Mistral only.");
        }
        return new ModelConfig(
            architecture,
            Int("vocab_size"),
            hidden,
            Int("intermediate_size"),
            Int("num_hidden_layers"),
            heads,
            kvHeads,
            headDim,
            Double("rms_norm_eps", 1e-6),
            Double("rope_theta", 10000.0),
            ParseRopeScaling(root, source),
            Int("max_position_embeddings", 2048),
            Bool("tie_word_embeddings", false),
            QkvBias: architecture == ModelArchitecture.Qwen2 || attentionBias,
            OutputBias: architecture != ModelArchitecture.Qwen2 && attentionBias,
            MlpBias: Bool("mlp_bias", false),
            root.TryGetProperty("bos_token_id", out var bos) && bos.ValueKind == JsonValueKind.Number ? bos.GetInt32() : null,
            ParseTokenIds(root, "eos_token_id", source),
            root.TryGetProperty("torch_dtype", out var dtype) && dtype.ValueKind == JsonValueKind.String ? dtype.GetString() : null)
        {
            SlidingWindow = slidingWindow,
        };
    }

    private static ModelArchitecture ParseArchitecture(JsonElement root, string source)
    {
        var names = root.TryGetProperty("architectures", out var list) && list.ValueKind == JsonValueKind.Array
            ? list.EnumerateArray().Where(a => a.ValueKind == JsonValueKind.String).Select(a => a.GetString()!).ToList()
            : [];
        foreach (var name in names)
        {
            switch (name)
            {
                case "LlamaForCausalLM": return ModelArchitecture.Llama;
                case "MistralForCausalLM": return ModelArchitecture.Mistral;
                case "Qwen2ForCausalLM": return ModelArchitecture.Qwen2;
                case "Qwen3ForCausalLM": return ModelArchitecture.Qwen3;
            }
        }
        var described = names.Count == 0 ? "no 'architectures'" : $"architectures [{string.Join(", ", names)}]";
        throw new ModelLoadException(
            $"{source}: unsupported model ({described}); gpud supports LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM.");
    }

    private static RopeScaling? ParseRopeScaling(JsonElement root, string source)
    {
        if (!root.TryGetProperty("rope_scaling", out var scaling) || scaling.ValueKind == JsonValueKind.Null) return null;
        if (scaling.ValueKind != JsonValueKind.Object) throw new ModelLoadException($"{source}: 'rope_scaling' must be an object or null.");
        var type = scaling.TryGetProperty("rope_type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()!
            : scaling.TryGetProperty("type", out t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "default";
        double Get(string key, double fallback) => scaling.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : fallback;
        return type switch
        {
            "default" => null,
            "linear" => new RopeScaling(type, Get("factor", 1), 0, 0, 0),
            "llama3" => new RopeScaling(type, Get("factor", 8), Get("low_freq_factor", 1), Get("high_freq_factor", 4),
                (int)Get("original_max_position_embeddings", 8192)),
            _ => throw new ModelLoadException($"{source}: rope_scaling type '{type}' is not supported (default, linear, llama3)."),
        };
    }

    private static List<int> ParseTokenIds(JsonElement root, string key, string source)
    {
        if (!root.TryGetProperty(key, out var value) || value.ValueKind == JsonValueKind.Null) return [];
        if (value.ValueKind == JsonValueKind.Number) return [value.GetInt32()];
        if (value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(v => v.ValueKind == JsonValueKind.Number))
            return value.EnumerateArray().Select(v => v.GetInt32()).ToList();
        throw new ModelLoadException($"{source}: '{key}' must be an integer or a list of integers.");
    }
}
