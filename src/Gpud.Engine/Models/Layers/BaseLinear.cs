using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>
/// A frozen linear projection of the base model (<c>weight</c> [out, in], optional <c>bias</c>), named as in the
/// Hugging Face state dict. Adapters wrap it rather than replace it, and a quantized base linear can take its place
/// behind the same forward.
/// </summary>
public sealed class BaseLinear : nn.Module<Tensor, Tensor>
{
    public BaseLinear(WeightLoader weights, string prefix, long inFeatures, long outFeatures, bool bias) : base(prefix)
    {
        ArgumentNullException.ThrowIfNull(weights);
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = weights.Parameter($"{prefix}.weight", outFeatures, inFeatures);
        register_parameter("weight", Weight);
        if (bias)
        {
            Bias = weights.Parameter($"{prefix}.bias", outFeatures);
            register_parameter("bias", Bias);
        }
    }

    public long InFeatures { get; }

    public long OutFeatures { get; }

    public Parameter Weight { get; }

    public Parameter? Bias { get; }

    public override Tensor forward(Tensor input) => nn.functional.linear(input, Weight, Bias);
}
