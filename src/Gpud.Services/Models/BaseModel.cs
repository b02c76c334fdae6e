using Gpud.Engine.Models;
using Gpud.Engine.Templates;
using Gpud.Engine.Tokenization;
using Gpud.Services.Errors;
using static TorchSharp.torch;

namespace Gpud.Services.Models;

/// <summary>A base model as configured (<c>Gpud:Models:&lt;name&gt;</c>) or built in (<c>gpud-tiny</c>).</summary>
/// <param name="Dtype">null: bfloat16 on CUDA, float32 on CPU.</param>
/// <param name="Devices">Devices it may be placed on; empty means any.</param>
public sealed record BaseModelDefinition(string Name, string Path, string? Dtype, IReadOnlyList<string> Devices, bool BuiltIn = false);

/// <summary>A base model whose directory was checked: config, weights' headers and tokenizer all readable.</summary>
/// <param name="ChatTemplate">null when tokenizer_config.json has none or it cannot be parsed (<paramref name="ChatTemplateError"/>).</param>
public sealed record BaseModel(BaseModelDefinition Definition, ModelConfig Config, TextTokenizer Tokenizer, long CreatedAt,
    ChatTemplate? ChatTemplate, string? ChatTemplateError)
{
    // One formatter per model: it learns the template's end-of-turn token once (ChatFormatter.EndOfTurnTokenIds).
    private readonly ChatFormatter? _chat = ChatTemplate is null ? null : new ChatFormatter(Tokenizer, ChatTemplate);

    // Structured outputs over the vocabulary's byte trie, built on the first request that needs them (~0.1 s for 128k
    // tokens); a race only builds it twice.
    private Engine.Generation.Constraints.StructuredOutput? _structuredOutput;

    public string Name => Definition.Name;

    public Engine.Generation.Constraints.StructuredOutput StructuredOutput => _structuredOutput ??= new(Tokenizer.TokenBytes());

    /// <summary>The configured dtype, else bfloat16 on CUDA and float32 on the CPU.</summary>
    public ScalarType DTypeOn(Device device) => Definition.Dtype?.ToLowerInvariant() switch
    {
        "float32" or "f32" or "fp32" => ScalarType.Float32,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        "float16" or "f16" or "fp16" => ScalarType.Float16,
        _ => device?.type == TorchSharp.DeviceType.CUDA ? ScalarType.BFloat16 : ScalarType.Float32,
    };

    /// <summary>The formatter chat requests use; a model without a usable template fails chat requests only.</summary>
    public ChatFormatter Chat() => _chat ?? throw GpudException.Invalid(
            $"The model '{Name}' cannot be used for chat: {ChatTemplateError ?? "its tokenizer_config.json has no chat_template"}. Use /v1/completions with a prompt instead.",
            "model", "chat_template_unavailable");
}
