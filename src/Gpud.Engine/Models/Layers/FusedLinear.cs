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
        if (TrainingAdapters() is not { } trained) return adapters?.Apply(this, input) ?? nn.functional.linear(input, Weight, Bias);

        using var scope = NewDisposeScope();
        // Training. Every member adds its own delta under one scale (the usual all-linear LoRA): the base is still one
        // matmul, and its backward one matmul for the input's gradient.
        if (trained.TrueForAll(a => a is { IsAdditive: true }) && trained.TrueForAll(a => a!.Settings.Scale == trained[0]!.Settings.Scale))
        {
            var first = trained[0]!;
            var deltas = new List<Tensor>(trained.Count);
            if (!trained.Exists(a => a!.DropsOut) && trained.TrueForAll(a => a!.Settings.Rank == first.Settings.Rank))
            {
                // The members read the same input: one matmul by their stacked A matrices (one in backward for A's
                // gradients, one for the input's), then each member's B on its own r columns.
                var weights = trained.Select(a => a!.Weights(input.dtype)).ToList();
                var lowRank = nn.functional.linear(input, cat(weights.Select(w => w.A).ToList(), 0)).split(first.Settings.Rank, -1);
                for (var i = 0; i < weights.Count; i++) deltas.Add(nn.functional.linear(lowRank[i], weights[i].B));
            }
            else
            {
                foreach (var adapter in trained) deltas.Add(adapter!.Delta(input)); // in member order: dropout draws as before
            }
            return nn.functional.linear(input, Weight, Bias).add_(cat(deltas, -1), first.Settings.Scale).MoveToOuterDisposeScope();
        }
        // Otherwise (DoRA's re-scaled outputs, partial targets) each member has its own forward.
        var outputs = new List<Tensor>(Members.Count);
        foreach (var member in Members) outputs.Add(member.forward(input));
        return cat(outputs, -1).MoveToOuterDisposeScope();
    }

    /// <summary>The members' training adapters in member order, or null when none has one.</summary>
    private List<Lora.LoraAdapter?>? TrainingAdapters()
    {
        List<Lora.LoraAdapter?>? adapters = null;
        for (var i = 0; i < Members.Count; i++)
        {
            if (Members[i].Adapter is not { } adapter) continue;
            adapters ??= [.. Enumerable.Repeat<Lora.LoraAdapter?>(null, Members.Count)];
            adapters[i] = adapter;
        }
        return adapters;
    }

    public void Dispose()
    {
        Weight.Dispose();
        Bias?.Dispose();
    }
}
