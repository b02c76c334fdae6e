using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>The SwiGLU feed-forward block (<c>mlp</c>): down(silu(gate(x)) * up(x)).</summary>
public sealed class Mlp : nn.Module<Tensor, Tensor>
{
    private readonly long _intermediate;

    public Mlp(ModelConfig config, WeightLoader weights, string prefix) : base(prefix)
    {
        ArgumentNullException.ThrowIfNull(config);
        _intermediate = config.IntermediateSize;
        GateUp = new FusedLinear(weights, [($"{prefix}.gate_proj", _intermediate), ($"{prefix}.up_proj", _intermediate)], config.HiddenSize, config.MlpBias);
        DownProj = new BaseLinear(weights, $"{prefix}.down_proj", config.IntermediateSize, config.HiddenSize, config.MlpBias);
        register_module("gate_proj", GateProj);
        register_module("up_proj", UpProj);
        register_module("down_proj", DownProj);
    }

    /// <summary>gate_proj and up_proj, projected in one matmul.</summary>
    public FusedLinear GateUp { get; }

    public BaseLinear GateProj => GateUp.Members[0];
    public BaseLinear UpProj => GateUp.Members[1];
    public BaseLinear DownProj { get; }

    public override Tensor forward(Tensor input) => Apply(input, null);

    public Tensor Apply(Tensor input, Lora.BatchLora? adapters)
    {
        using var scope = NewDisposeScope();
        var gateUp = GateUp.Project(input, adapters);
        var gated = nn.functional.silu(gateUp.narrow(-1, 0, _intermediate)) * gateUp.narrow(-1, _intermediate, _intermediate);
        return DownProj.Project(gated, adapters).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) GateUp.Dispose();
        base.Dispose(disposing);
    }
}
