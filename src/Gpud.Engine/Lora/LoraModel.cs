using Gpud.Engine.Models;
using Gpud.Engine.Models.Layers;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Gpud.Engine.Lora;

/// <summary>Puts LoRA adapters on a model's projections and finds them again by their Hugging Face module path.</summary>
public static class LoraModel
{
    /// <summary>Every projection of the model with its module path (<c>model.layers.0.self_attn.q_proj</c>).</summary>
    public static IEnumerable<(string Path, string Name, BaseLinear Layer)> Projections(CausalLanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        for (var i = 0; i < model.Body.Layers.Count; i++)
        {
            var layer = model.Body.Layers[i];
            var attention = $"model.layers.{i}.self_attn";
            var mlp = $"model.layers.{i}.mlp";
            yield return ($"{attention}.q_proj", "q_proj", layer.SelfAttn.QProj);
            yield return ($"{attention}.k_proj", "k_proj", layer.SelfAttn.KProj);
            yield return ($"{attention}.v_proj", "v_proj", layer.SelfAttn.VProj);
            yield return ($"{attention}.o_proj", "o_proj", layer.SelfAttn.OProj);
            yield return ($"{mlp}.gate_proj", "gate_proj", layer.Mlp.GateProj);
            yield return ($"{mlp}.up_proj", "up_proj", layer.Mlp.UpProj);
            yield return ($"{mlp}.down_proj", "down_proj", layer.Mlp.DownProj);
        }
    }

    /// <summary>
    /// The same projections from the config alone (no weights loaded), with their [in, out] features: enough to check an
    /// adapter file against a base model before the model is on any device.
    /// </summary>
    public static IEnumerable<(string Path, string Name, long InFeatures, long OutFeatures)> ProjectionShapes(ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        long hidden = config.HiddenSize, attention = (long)config.NumHeads * config.HeadDim, kv = (long)config.NumKeyValueHeads * config.HeadDim;
        for (var i = 0; i < config.NumLayers; i++)
        {
            var (a, m) = ($"model.layers.{i}.self_attn", $"model.layers.{i}.mlp");
            yield return ($"{a}.q_proj", "q_proj", hidden, attention);
            yield return ($"{a}.k_proj", "k_proj", hidden, kv);
            yield return ($"{a}.v_proj", "v_proj", hidden, kv);
            yield return ($"{a}.o_proj", "o_proj", attention, hidden);
            yield return ($"{m}.gate_proj", "gate_proj", hidden, config.IntermediateSize);
            yield return ($"{m}.up_proj", "up_proj", hidden, config.IntermediateSize);
            yield return ($"{m}.down_proj", "down_proj", config.IntermediateSize, hidden);
        }
    }

    /// <summary>
    /// Attaches an adapter to every projection named in <paramref name="targetModules"/> (<c>"all-linear"</c> means all)
    /// and returns the trainable parameters. The seed fixes the Gaussian initialisation.
    /// </summary>
    public static IReadOnlyList<Parameter> Attach(CausalLanguageModel model, LoraSettings settings, IReadOnlyCollection<string> targetModules, long seed)
    {
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(targetModules);
        var targets = targetModules.Contains("all-linear") ? LoraSettings.AllLinear.ToHashSet() : targetModules.ToHashSet();
        var unknown = targets.Except(LoraSettings.AllLinear).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException($"Unknown target modules: {string.Join(", ", unknown)} (valid: {string.Join(", ", LoraSettings.AllLinear)}, all-linear).", nameof(targetModules));

        using var generator = new Generator((ulong)seed); // CPU-only in TorchSharp: draws are moved to the model's device
        var parameters = new List<Parameter>();
        foreach (var (_, name, layer) in Projections(model))
        {
            if (!targets.Contains(name)) continue;
            var adapter = new LoraAdapter(layer, settings, generator);
            layer.Attach(adapter);
            parameters.AddRange(adapter.parameters().Cast<Parameter>());
        }
        return parameters;
    }

    /// <summary>
    /// Attaches a saved adapter as the starting point of further training (continuing a fine-tuned model) and returns
    /// its trainable parameters, in module order as <see cref="Attach"/> returns them. Its rank, scale, DoRA and targets
    /// are the adapter's; <paramref name="dropout"/> is the new job's.
    /// </summary>
    public static IReadOnlyList<Parameter> Continue(CausalLanguageModel model, LoraWeights weights, double dropout)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var settings = weights.Settings with { Dropout = dropout, Init = LoraInit.Gaussian };
        var parameters = new List<Parameter>();
        foreach (var (path, _, layer) in Projections(model))
        {
            if (!weights.Projections.TryGetValue(path, out var projection)) continue;
            var adapter = LoraAdapter.FromWeights(layer, settings, projection.A, projection.B, projection.Magnitude);
            layer.Attach(adapter);
            parameters.AddRange(adapter.parameters().Cast<Parameter>());
        }
        return parameters;
    }
}
