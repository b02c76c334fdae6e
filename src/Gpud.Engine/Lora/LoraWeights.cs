using static TorchSharp.torch;

namespace Gpud.Engine.Lora;

/// <summary>One projection's LoRA matrices in float32 host memory: A [r, in], B [out, r], DoRA's magnitude [out].</summary>
public sealed record LoraProjection(string Name, Tensor A, Tensor B, Tensor? Magnitude) : IDisposable
{
    public void Dispose()
    {
        A.Dispose();
        B.Dispose();
        Magnitude?.Dispose();
    }
}

/// <summary>
/// A LoRA adapter read from disk but attached to nothing: what the serving side keeps in host memory and copies into
/// a device <see cref="AdapterPool"/> slot. Projections are keyed by module path (<c>model.layers.0.self_attn.q_proj</c>).
/// </summary>
public sealed class LoraWeights(LoraSettings settings, IReadOnlyDictionary<string, LoraProjection> projections, string? baseModelName) : IDisposable
{
    public LoraSettings Settings { get; } = settings;

    public IReadOnlyDictionary<string, LoraProjection> Projections { get; } = projections;

    /// <summary><c>base_model_name_or_path</c> from adapter_config.json (informational: where it was trained).</summary>
    public string? BaseModelName { get; } = baseModelName;

    /// <summary>Host bytes held.</summary>
    public long Bytes => Projections.Values.Sum(p => (p.A.numel() + p.B.numel() + (p.Magnitude?.numel() ?? 0)) * sizeof(float));

    public IReadOnlyList<string> TargetModules => Projections.Values.Select(p => p.Name).Distinct(StringComparer.Ordinal).ToList();

    public void Dispose()
    {
        foreach (var projection in Projections.Values) projection.Dispose();
    }
}
