using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>The SwiGLU feed-forward block (<c>mlp</c>): down(silu(gate(x)) * up(x)).</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    public Mlp(ModelConfig config, WeightLoader weights, string prefix) : base(prefix)
    {
        ArgumentNullException.ThrowIfNull(config);
        GateProj = new BaseLinear(weights, $"{prefix}.gate_proj", config.HiddenSize, config.IntermediateSize, config.MlpBias);
        UpProj = new BaseLinear(weights, $"{prefix}.up_proj", config.HiddenSize, config.IntermediateSize, config.MlpBias);
        DownProj = new BaseLinear(weights, $"{prefix}.down_proj", config.IntermediateSize, config.HiddenSize, config.MlpBias);
        register_module("gate_proj", GateProj);
        register_module("up_proj", UpProj);
        register_module("down_proj", DownProj);
    }

    public BaseLinear GateProj { get; }
    public BaseLinear UpProj { get; }
    public BaseLinear DownProj { get; }

    public override Tensor forward(Tensor input) => Apply(input, null);

    public Tensor Apply(Tensor input, Lora.BatchLora? adapters)
    {
        using var scope = NewDisposeScope();
        var gated = nn.functional.silu(GateProj.Project(input, adapters)) * UpProj.Project(input, adapters);
        return DownProj.Project(gated, adapters).MoveToOuterDisposeScope();
    }
}
