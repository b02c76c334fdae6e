using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Gpud.Engine.Weights;

/// <summary>
/// Normal-distributed weights (σ = 1/√fan-in, norms at 1) for any Llama-shaped config: benchmarks and GPU tests need
/// 1B-class shapes that no fixture could ship, and random weights exercise exactly the same kernels.
/// </summary>
public sealed class RandomWeights : IWeightSource
{
    private readonly Dictionary<string, long[]> _shapes = new(StringComparer.Ordinal);
    private readonly Generator _generator;

    public RandomWeights(ModelConfig config, ulong seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        _generator = new Generator(seed);
        long hidden = config.HiddenSize;
        _shapes["model.embed_tokens.weight"] = [config.VocabSize, hidden];
        _shapes["model.norm.weight"] = [hidden];
        if (!config.TieWordEmbeddings) _shapes["lm_head.weight"] = [config.VocabSize, hidden];
        for (var i = 0; i < config.NumLayers; i++)
        {
            _shapes[$"model.layers.{i}.input_layernorm.weight"] = [hidden];
            _shapes[$"model.layers.{i}.post_attention_layernorm.weight"] = [hidden];
        }
        foreach (var (path, _, inFeatures, outFeatures) in LoraModel.ProjectionShapes(config))
            _shapes[$"{path}.weight"] = [outFeatures, inFeatures];
    }

    public IReadOnlyCollection<string> Names => _shapes.Keys;

    public bool Contains(string name) => _shapes.ContainsKey(name);

    public long[] ShapeOf(string name) => _shapes[name];

    public Tensor Read(string name, ScalarType dtype)
    {
        var shape = _shapes[name];
        if (shape.Length == 1) return ones(shape, dtype);
        using var scope = NewDisposeScope();
        return (randn(shape, generator: _generator) / Math.Sqrt(shape[1])).to(dtype).MoveToOuterDisposeScope();
    }

    public void Dispose() => _generator.Dispose();
}
