using Gpud.Services.Models;

namespace Gpud.Services.Inference;

/// <summary>What a <c>model</c> name can be.</summary>
public enum ServedModelKind
{
    Base,
    FineTuned,
    Checkpoint,
    Imported,
}

/// <summary>A callable model: a base model, or a LoRA adapter (PEFT directory) on one.</summary>
/// <param name="OwnedBy">The project (organization) it belongs to; <c>gpud</c> for base and configured models.</param>
/// <param name="AdapterDirectory">The PEFT directory, also the adapter's cache key (unique per artifact); null for a base.</param>
public sealed record ServedModel(string Id, ServedModelKind Kind, BaseModel Base, string OwnedBy, long Created, string? AdapterDirectory = null, string? JobId = null)
{
    public const string AdapterNameRule = "adapter names use letters, digits, '-', '_', '.', '/' and ':' (at most 128) and do not start with 'ft:'";

    /// <summary>The one rule for configured and uploaded adapter names (<c>ft:</c> belongs to fine-tuned models).</summary>
    public static bool IsValidAdapterName(string name) =>
        name.Length is > 0 and <= 128 && !name.StartsWith("ft:", StringComparison.Ordinal)
        && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '/' or ':');
}
