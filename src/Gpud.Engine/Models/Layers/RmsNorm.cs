using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>RMSNorm as Hugging Face's LlamaRMSNorm computes it: statistics in float32, scale in the input dtype.</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly double _eps;

    public RmsNorm(WeightLoader weights, string prefix, long size, double eps) : base(prefix)
    {
        ArgumentNullException.ThrowIfNull(weights);
        _eps = eps;
        Weight = weights.Parameter($"{prefix}.weight", size);
        register_parameter("weight", Weight);
    }

    public Parameter Weight { get; }

    public override Tensor forward(Tensor input)
    {
        using var scope = NewDisposeScope();
        var x = input.to_type(ScalarType.Float32);
        var variance = x.pow(2).mean([-1], keepdim: true);
        x = x * (variance + _eps).rsqrt();
        return (Weight * x.to_type(input.dtype)).MoveToOuterDisposeScope();
    }
}
