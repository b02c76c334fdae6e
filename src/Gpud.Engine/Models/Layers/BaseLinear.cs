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

    /// <summary>A projection over weights loaded elsewhere (a <see cref="FusedLinear"/>'s rows).</summary>
    public BaseLinear(string prefix, Parameter weight, Parameter? bias) : base(prefix)
    {
        ArgumentNullException.ThrowIfNull(weight);
        OutFeatures = weight.shape[0];
        InFeatures = weight.shape[1];
        Weight = weight;
        register_parameter("weight", Weight);
        if (bias is not null)
        {
            Bias = bias;
            register_parameter("bias", Bias);
        }
    }

    public long InFeatures { get; }

    public long OutFeatures { get; }

    public Parameter Weight { get; }

    public Parameter? Bias { get; }

    /// <summary>The LoRA adapter being trained on this projection, if any.</summary>
    public Lora.LoraAdapter? Adapter { get; private set; }

    /// <summary>Attaches an adapter (registered as the submodule <c>lora</c>); its parameters are the trainable ones.</summary>
    public void Attach(Lora.LoraAdapter adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        if (Adapter is not null) throw new InvalidOperationException($"{GetName()} already has an adapter.");
        Adapter = adapter;
        register_module("lora", adapter);
    }

    public override Tensor forward(Tensor input) =>
        Adapter is null ? nn.functional.linear(input, Weight, Bias) : Adapter.Forward(input, this);

    /// <summary>The forward pass with serving adapters applied per row (see <see cref="Lora.BatchLora"/>), when given.</summary>
    public Tensor Project(Tensor input, Lora.BatchLora? adapters) => adapters?.Apply(this, input) ?? forward(input);
}
