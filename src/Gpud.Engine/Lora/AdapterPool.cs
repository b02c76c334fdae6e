using Gpud.Engine.Models;
using Gpud.Engine.Models.Layers;
using static TorchSharp.torch;

namespace Gpud.Engine.Lora;

/// <summary>
/// Device memory for serving many LoRA adapters on one resident base model, after S-LoRA's unified pool: for every
/// projection, one stacked A [slots + 1, maxRank, in] and B [slots + 1, out, maxRank] in the base dtype. Slot 0 is all
/// zeros (the base model); an adapter of rank r fills its slot's first r ranks and leaves the rest zero, and its scale
/// is folded into B. A batch then picks each row's matrices by index (<see cref="BatchLora"/>): adapters of different
/// ranks and the base share one batched matmul, and loading an adapter is a copy into its slot, never a reallocation.
/// </summary>
public sealed class AdapterPool : IDisposable
{
    private readonly Dictionary<BaseLinear, Projection> _projections = new(ReferenceEqualityComparer.Instance);
    private readonly bool[] _dora;
    private readonly int[] _rank; // per slot: ranks beyond it are zeros

    public AdapterPool(CausalLanguageModel model, int slots, int maxRank)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRank, 1);
        Model = model;
        Slots = slots;
        MaxRank = maxRank;
        _dora = new bool[slots + 1];
        _rank = new int[slots + 1];
        foreach (var (path, _, layer) in LoraModel.Projections(model))
        {
            _projections[layer] = new Projection(path,
                zeros([slots + 1, maxRank, layer.InFeatures], model.DType, model.Device).DetachFromDisposeScope(),
                zeros([slots + 1, layer.OutFeatures, maxRank], model.DType, model.Device).DetachFromDisposeScope());
        }
    }

    public CausalLanguageModel Model { get; }

    /// <summary>Adapters that fit at once (slot numbers 1..Slots).</summary>
    public int Slots { get; }

    public int MaxRank { get; }

    /// <summary>Device bytes the pool holds.</summary>
    public long Bytes => _projections.Values.Sum(p => (p.A.numel() + p.B.numel() + (p.Scale?.numel() ?? 0)) * p.A.element_size());

    /// <summary>
    /// Copies an adapter into a slot, replacing whatever was there. DoRA's row-wise magnitude scale m / ‖W + s·BA‖ is
    /// computed here once against the resident base weight, so serving a DoRA adapter costs one extra multiply.
    /// </summary>
    public void Load(int slot, LoraWeights adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        CheckSlot(slot);
        if (adapter.Settings.Rank > MaxRank)
            throw new ModelLoadException($"The adapter's rank {adapter.Settings.Rank} exceeds the serving pool's maximum rank {MaxRank}.");
        using var noGrad = no_grad();
        Clear(slot);
        var rank = adapter.Settings.Rank;
        var scale = adapter.Settings.Scale;
        foreach (var (layer, projection) in _projections)
        {
            if (!adapter.Projections.TryGetValue(projection.Path, out var weights)) continue;
            using var scope = NewDisposeScope();
            var a = weights.A.to(Model.Device);
            var b = weights.B.to(Model.Device);
            projection.A[slot].narrow(0, 0, rank).copy_(a.to_type(Model.DType));
            projection.B[slot].narrow(1, 0, rank).copy_((b * scale).to_type(Model.DType));
            if (weights.Magnitude is { } magnitude)
            {
                var adapted = layer.Weight.to_type(ScalarType.Float32) + b.matmul(a) * scale;
                // The pool outlives this scope.
                projection.Scale ??= ones([Slots + 1, layer.OutFeatures], Model.DType, Model.Device).DetachFromDisposeScope();
                projection.Scale[slot].copy_((magnitude.to(Model.Device) / adapted.norm(1)).to_type(Model.DType));
            }
        }
        _dora[slot] = adapter.Settings.UseDora;
        _rank[slot] = rank;
    }

    /// <summary>Empties a slot (zeros, scale 1): rows pointing at it get the base model.</summary>
    public void Clear(int slot)
    {
        CheckSlot(slot);
        using var noGrad = no_grad();
        foreach (var projection in _projections.Values)
        {
            using var a = projection.A[slot];
            using var b = projection.B[slot];
            a.zero_();
            b.zero_();
            if (projection.Scale is not null)
            {
                using var s = projection.Scale[slot];
                s.fill_(1);
            }
        }
        _dora[slot] = false;
        _rank[slot] = 0;
    }

    /// <summary>The per-row selection for one forward pass; null when every row is the base model.</summary>
    public BatchLora? Select(IReadOnlyList<int> slotPerRow)
    {
        ArgumentNullException.ThrowIfNull(slotPerRow);
        if (slotPerRow.All(s => s == 0)) return null;
        foreach (var slot in slotPerRow) if (slot != 0) CheckSlot(slot);
        var only = slotPerRow.Distinct().Count() == 1 ? slotPerRow[0] : (int?)null;
        // Only the ranks some row's adapter uses take part: the padding up to MaxRank is zeros.
        var rank = Math.Max(1, slotPerRow.Max(s => _rank[s]));
        return new BatchLora(this, tensor(slotPerRow.Select(s => (long)s).ToArray(), device: Model.Device), only, rank, slotPerRow.Any(s => _dora[s]));
    }

    internal bool TryGet(BaseLinear layer, out Projection projection) => _projections.TryGetValue(layer, out projection!);

    private void CheckSlot(int slot)
    {
        if (slot < 1 || slot > Slots) throw new ArgumentOutOfRangeException(nameof(slot), slot, $"Slots are 1..{Slots}.");
    }

    public void Dispose()
    {
        foreach (var projection in _projections.Values)
        {
            projection.A.Dispose();
            projection.B.Dispose();
            projection.Scale?.Dispose();
        }
    }

    internal sealed class Projection(string path, Tensor a, Tensor b)
    {
        public string Path { get; } = path;
        public Tensor A { get; } = a;
        public Tensor B { get; } = b;

        /// <summary>DoRA's per-slot row scale [slots + 1, out] (1 for plain LoRA); allocated when a DoRA adapter first loads.</summary>
        public Tensor? Scale { get; set; }
    }
}

/// <summary>
/// Which pool slot each row of a batch uses, for one forward pass. Each projection then computes
/// y = W x + B[slot] (A[slot] x) row by row with two batched matmuls over gathered matrices (Punica's BGMV, written
/// with index_select + bmm), plus DoRA's row scale: y = b + m_slot ⊙ (W x + lora). Only the ranks the batch's adapters
/// use are gathered, and a batch on a single adapter gathers nothing.
/// </summary>
public sealed class BatchLora : IDisposable
{
    private readonly AdapterPool _pool;
    private readonly Tensor _slots;
    private readonly int? _onlySlot;
    private readonly int _rank;
    private readonly bool _anyDora;

    internal BatchLora(AdapterPool pool, Tensor slots, int? onlySlot, int rank, bool anyDora)
    {
        _pool = pool;
        _slots = slots;
        _onlySlot = onlySlot;
        _rank = rank;
        _anyDora = anyDora;
    }

    /// <param name="input">[rows, seq, in]</param>
    public Tensor Apply(BaseLinear layer, Tensor input)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentNullException.ThrowIfNull(input);
        if (!_pool.TryGet(layer, out var projection)) return nn.functional.linear(input, layer.Weight, layer.Bias);
        using var scope = NewDisposeScope();
        Tensor lora;
        if (_onlySlot is { } slot)
        {
            // Every row uses one adapter: two plain matmuls on its matrices, nothing gathered per row.
            lora = nn.functional.linear(nn.functional.linear(input, projection.A[slot].narrow(0, 0, _rank)), projection.B[slot].narrow(1, 0, _rank));
        }
        else
        {
            var a = projection.A.narrow(1, 0, _rank).index_select(0, _slots);    // [rows, r, in]
            var b = projection.B.narrow(2, 0, _rank).index_select(0, _slots);    // [rows, out, r]
            lora = input.bmm(a.transpose(1, 2)).bmm(b.transpose(1, 2));        // [rows, seq, out]
        }
        var output = nn.functional.linear(input, layer.Weight) + lora;
        if (_anyDora && projection.Scale is not null)
            output *= _onlySlot is { } only ? projection.Scale[only] : projection.Scale.index_select(0, _slots).unsqueeze(1);
        if (layer.Bias is not null) output += layer.Bias;
        return output.MoveToOuterDisposeScope();
    }

    public void Dispose() => _slots.Dispose();
}
