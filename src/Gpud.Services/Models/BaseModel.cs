using Gpud.Engine.Models;
using Gpud.Engine.Tokenization;

namespace Gpud.Services.Models;

/// <summary>A base model as configured (<c>Gpud:Models:&lt;name&gt;</c>) or built in (<c>gpud-tiny</c>).</summary>
/// <param name="Dtype">null: bfloat16 on CUDA, float32 on CPU.</param>
/// <param name="Devices">Devices it may be placed on; empty means any.</param>
public sealed record BaseModelDefinition(string Name, string Path, string? Dtype, IReadOnlyList<string> Devices, bool BuiltIn = false);

/// <summary>A base model whose directory was checked: config, weights' headers and tokenizer all readable.</summary>
public sealed record BaseModel(BaseModelDefinition Definition, ModelConfig Config, TextTokenizer Tokenizer, long CreatedAt)
{
    public string Name => Definition.Name;
}
