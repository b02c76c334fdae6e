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
public sealed record ServedModel(string Id, ServedModelKind Kind, BaseModel Base, string OwnedBy, long Created, string? AdapterDirectory = null, string? JobId = null);
