using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>
/// RMSNorm, x / √(mean(x²) + ε) · w, with statistics in float32 as Hugging Face's LlamaRMSNorm keeps them.
/// </summary>
/// <remarks>
/// Computed as LayerNorm over the pair [x, −x]: its mean is 0 and its variance mean(x²), so the first half of the
/// result is exactly RMSNorm. That is two kernels (one broadcast multiply, libtorch's fused layer_norm, which
/// accumulates in float32 for half-precision inputs) instead of seven (cast, square, mean, add, rsqrt, multiply, cast)
/// and the weight's multiply: two of these run in every decoder layer, and on a GPU a decode step costs what its
/// kernel launches cost. The result is rounded once, where transformers rounds the normalized value and then its
/// product with the weight.
/// </remarks>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly double _eps;
    private readonly long _size;
    private readonly Tensor _signs;      // [2, 1]: +1, −1
    private readonly Tensor _pairWeight; // [2, size]: the weight for both halves (layer_norm wants it contiguous)

    public RmsNorm(WeightLoader weights, string prefix, long size, double eps) : base(prefix)
    {
        ArgumentNullException.ThrowIfNull(weights);
        _eps = eps;
        _size = size;
        Weight = weights.Parameter($"{prefix}.weight", size);
        register_parameter("weight", Weight);
        using var scope = NewDisposeScope();
        _signs = tensor(new[] { 1.0f, -1.0f }).view(2, 1).to(weights.DType, weights.Device).DetachFromDisposeScope();
        _pairWeight = Weight.detach().expand(2, size).contiguous().DetachFromDisposeScope();
    }

    public Parameter Weight { get; }

    public override Tensor forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        using var scope = NewDisposeScope();
        var pair = input.unsqueeze(-2) * _signs; // [.., 2, size]
        return nn.functional.layer_norm(pair, [2, _size], _pairWeight, null, _eps).select(-2, 0).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _signs.Dispose();
            _pairWeight.Dispose();
        }
        base.Dispose(disposing);
    }
}
