using TorchSharp;
using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>
/// Projections that read the same input (q/k/v; gate/up) with their weights stored as consecutive rows of one tensor,
/// so inference runs one matmul for all of them instead of one each: decoding on a GPU is bound by kernel launches,
/// not arithmetic. Each member stays a <see cref="BaseLinear"/> with its Hugging Face name and a parameter that is a
/// view of its rows, so state dicts, training adapters, PEFT paths and in-place weight updates (PiSSA's residual) see
/// no difference, and no weight is held twice.
/// </summary>
public sealed class FusedLinear : IDisposable
{
    private readonly long[] _offsets;

    public FusedLinear(WeightLoader weights, IReadOnlyList<(string Prefix, long OutFeatures)> members, long inFeatures, bool bias)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(members);
        var total = members.Sum(m => m.OutFeatures);
        Weight = empty([total, inFeatures], weights.DType, weights.Device);
        Bias = bias ? empty([total], weights.DType, weights.Device) : null;
        _offsets = new long[members.Count];
        var list = new List<BaseLinear>(members.Count);
        var offset = 0L;
        for (var i = 0; i < members.Count; i++)
        {
            var (prefix, outFeatures) = members[i];
            _offsets[i] = offset;
            var weight = weights.ParameterInto($"{prefix}.weight", Weight.narrow(0, offset, outFeatures));
            var memberBias = Bias is null ? null : weights.ParameterInto($"{prefix}.bias", Bias.narrow(0, offset, outFeatures));
            list.Add(new BaseLinear(prefix, weight, memberBias));
            offset += outFeatures;
        }
        Members = list;
    }

    public IReadOnlyList<BaseLinear> Members { get; }

    /// <summary>[Σ out, in]: every member's weight, in member order.</summary>
    internal Tensor Weight { get; }

    internal Tensor? Bias { get; }

    /// <summary>Each member's first column in <see cref="Project"/>'s output.</summary>
    public IReadOnlyList<long> Offsets => _offsets;

    /// <summary>Every member's output side by side, [.., Σ out] in member order.</summary>
    /// <param name="adapters">Per-row serving adapters, or null.</param>
    public Tensor Project(Tensor input, Lora.BatchLora? adapters)
    {
        ArgumentNullException.ThrowIfNull(input);
        // Training: each member's adapter has its own forward (dropout, DoRA's weight norm) and gradient.
        if (Members.Any(m => m.Adapter is not null))
        {
            using var scope = NewDisposeScope();
            return cat(Members.Select(m => m.forward(input)).ToList(), -1).MoveToOuterDisposeScope();
        }
        return adapters?.Apply(this, input) ?? nn.functional.linear(input, Weight, Bias);
    }

    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
    }
}
