using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>One pre-norm transformer block: <c>model.layers.{i}</c>.</summary>
public sealed class DecoderLayer : nn.Module
{
    public DecoderLayer(ModelConfig config, WeightLoader weights, string prefix) : base(prefix)
    {
        ArgumentNullException.ThrowIfNull(config);
        InputLayernorm = new RmsNorm(weights, $"{prefix}.input_layernorm", config.HiddenSize, config.RmsNormEps);
        SelfAttn = new Attention(config, weights, $"{prefix}.self_attn");
        PostAttentionLayernorm = new RmsNorm(weights, $"{prefix}.post_attention_layernorm", config.HiddenSize, config.RmsNormEps);
        Mlp = new Mlp(config, weights, $"{prefix}.mlp");
        register_module("input_layernorm", InputLayernorm);
        register_module("self_attn", SelfAttn);
        register_module("post_attention_layernorm", PostAttentionLayernorm);
        register_module("mlp", Mlp);
    }

    public RmsNorm InputLayernorm { get; }
    public Attention SelfAttn { get; }
    public RmsNorm PostAttentionLayernorm { get; }
    public Mlp Mlp { get; }

    public Tensor Forward(Tensor hidden, RotaryAngles angles, Tensor? mask, IKvCache? cache, Lora.BatchLora? adapters = null,
        PackedSegments? segments = null)
    {
        using var scope = NewDisposeScope();
        var attended = hidden + SelfAttn.Forward(InputLayernorm.forward(hidden), angles, mask, cache, adapters, segments);
        return (attended + Mlp.Apply(PostAttentionLayernorm.forward(attended), adapters)).MoveToOuterDisposeScope();
    }
}
