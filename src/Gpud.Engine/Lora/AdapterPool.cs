using Gpud.Engine.Models;
using Gpud.Engine.Models.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Gpud.Engine.Lora;

/// <summary>
/// Device memory for serving many LoRA adapters on one resident base model, after S-LoRA's unified pool: for every
/// projection, one stacked A [slots + 1, maxRank, in] and Bᵀ [slots + 1, maxRank, out] in the base dtype. Slot 0 is all
/// zeros (the base model); an adapter of rank r fills its slot's first r ranks and leaves the rest zero, and its scale
/// is folded into B. A batch then picks each row's matrices (<see cref="BatchLora"/>): adapters of different ranks and
/// the base share one batched computation, and loading an adapter is a copy into its slot, never a reallocation.
/// The A matrices of projections fused for inference (<see cref="FusedLinear"/>: q/k/v, gate/up) are rows of one
/// tensor [members, slots + 1, maxRank, in], so a decode step multiplies its input by all of them at once.
/// </summary>
public sealed class AdapterPool : IDisposable
{
    private readonly Dictionary<BaseLinear, Projection> _projections = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<object, Unit> _units = new(ReferenceEqualityComparer.Instance); // by FusedLinear or unfused BaseLinear
    private readonly bool[] _dora;
    private readonly int[] _rank; // per slot: ranks beyond it are zeros

    /// <param name="wholePoolDecode">Whether decode steps multiply by every slot's matrices at once (see
    /// <see cref="BatchLora"/>). null: on CUDA, where a decode step is bound by kernel launches, unless the pool is wider
    /// than <see cref="WholePoolWidthLimit"/>; never on the CPU, where the arithmetic over other slots costs more than the
    /// kernels it saves.</param>
    public AdapterPool(CausalLanguageModel model, int slots, int maxRank, bool? wholePoolDecode = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentOutOfRangeException.ThrowIfLessThan(slots, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRank, 1);
        Model = model;
        Slots = slots;
        MaxRank = maxRank;
        WholePoolDecode = wholePoolDecode ?? (model.Device.type == DeviceType.CUDA && (long)(slots + 1) * maxRank <= WholePoolWidthLimit);
        _dora = new bool[slots + 1];
        _rank = new int[slots + 1];
        var paths = new Dictionary<BaseLinear, string>(ReferenceEqualityComparer.Instance);
        foreach (var (path, _, layer) in LoraModel.Projections(model)) paths[layer] = path;
        foreach (var layer in model.Body.Layers)
        {
            Add(layer.SelfAttn.Qkv, layer.SelfAttn.Qkv.Members);
            Add(layer.SelfAttn.OProj, [layer.SelfAttn.OProj]);
            Add(layer.Mlp.GateUp, layer.Mlp.GateUp.Members);
            Add(layer.Mlp.DownProj, [layer.Mlp.DownProj]);
        }

        void Add(object key, IReadOnlyList<BaseLinear> members)
        {
            var a = zeros([members.Count, slots + 1, maxRank, members[0].InFeatures], model.DType, model.Device).DetachFromDisposeScope();
            var projections = members.Select((layer, i) => _projections[layer] = new Projection(paths[layer],
                a[i].DetachFromDisposeScope(),
                zeros([slots + 1, maxRank, layer.OutFeatures], model.DType, model.Device).DetachFromDisposeScope())).ToList();
            _units[key] = new Unit(a, projections);
        }
    }

    public CausalLanguageModel Model { get; }

    /// <summary>Adapters that fit at once (slot numbers 1..Slots).</summary>
    public int Slots { get; }

    public int MaxRank { get; }

    /// <summary>
    /// (slots + 1) · maxRank above which decode steps gather each row's matrices by default: a step reads the whole pool,
    /// which at this width is about three times the base model's weights (a 1B Llama: 44,032 pool values per layer and
    /// unit of width against 60 M weights), still little next to a launch-bound step.
    /// </summary>
    public const int WholePoolWidthLimit = 4096;

    /// <summary>Whether a decode step's rows multiply by every slot's A and B at once, masked to their own slot.</summary>
    public bool WholePoolDecode { get; }

    /// <summary>Device bytes the pool holds.</summary>
    public long Bytes => _projections.Values.Sum(p => (p.A.numel() + p.BT.numel() + (p.Scale?.numel() ?? 0)) * p.A.element_size());

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
            projection.BT[slot].narrow(0, 0, rank).copy_((b * scale).t().to_type(Model.DType));
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
            using var b = projection.BT[slot];
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

    internal Projection Get(BaseLinear layer) => _projections[layer];

    /// <summary>The projections <paramref name="key"/> (a <see cref="FusedLinear"/> or an unfused <see cref="BaseLinear"/>) computes at once.</summary>
    internal Unit UnitOf(object key) => _units.TryGetValue(key, out var unit) ? unit
        : throw new InvalidOperationException("A fused projection's member (q/k/v, gate/up) is applied through its FusedLinear, not alone.");

    private void CheckSlot(int slot)
    {
        if (slot < 1 || slot > Slots) throw new ArgumentOutOfRangeException(nameof(slot), slot, $"Slots are 1..{Slots}.");
    }

    public void Dispose()
    {
        foreach (var projection in _projections.Values)
        {
            projection.A.Dispose();
            projection.BT.Dispose();
            projection.Scale?.Dispose();
        }
        foreach (var unit in _units.Values) unit.A.Dispose();
    }

    /// <param name="a">[slots + 1, maxRank, in]: a view of its unit's A.</param>
    /// <param name="bt">[slots + 1, maxRank, out]: B transposed (times the adapter's scale), so that a step's rows can
    /// multiply by every slot's B at once as one [(slots + 1)·maxRank, out] matrix.</param>
    internal sealed class Projection(string path, Tensor a, Tensor bt)
    {
        public string Path { get; } = path;
        public Tensor A { get; } = a;
        public Tensor BT { get; } = bt;

        /// <summary>DoRA's per-slot row scale [slots + 1, out] (1 for plain LoRA); allocated when a DoRA adapter first loads.</summary>
        public Tensor? Scale { get; set; }
    }

    /// <summary>Projections computed together, with their A matrices as one tensor [members, slots + 1, maxRank, in].</summary>
    internal sealed record Unit(Tensor A, IReadOnlyList<Projection> Members);
}

/// <summary>
/// Which pool slot each row of a batch uses, for one forward pass. Each projection computes y = W x + B[slot] A[slot] x
/// for every row, plus DoRA's row scale: y = b + m_slot ⊙ (W x + lora). Two ways, by the shape of the input:
/// <list type="bullet">
/// <item>Decoding (one token per row) on a GPU (<see cref="AdapterPool.WholePoolDecode"/>): kernel launches, not
/// arithmetic, bound the step, so each fused projection multiplies its rows by every slot's A at once (one matmul for
/// q, k and v together), zeroes the columns of the slots a row does not use (one multiply by a mask made once per step)
/// and adds the product with every slot's Bᵀ into its output columns (one addmm per member): three kernels plus one per
/// member, and nothing gathered.</item>
/// <item>Otherwise (prompts; any step on the CPU): arithmetic matters, so only each row's own matrices take part
/// (Punica's BGMV, written as index_select + bmm), narrowed to the ranks the batch's adapters use; a batch on a single
/// adapter gathers nothing.</item>
/// </list>
/// </summary>
public sealed class BatchLora : IDisposable
{
    private readonly AdapterPool _pool;
    private readonly Tensor _slots;
    private readonly int? _onlySlot;
    private readonly int _rank;
    private readonly bool _anyDora;
    private readonly Dictionary<int, Tensor> _masks = []; // by member count: [rows, members·(slots + 1)·maxRank]

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
        return Apply(_pool.UnitOf(layer), input, layer.Weight, layer.Bias, []);
    }

    /// <summary>
    /// The same for fused projections: one matmul for all members' base weights, then each member's adapter delta (and
    /// DoRA scale) on its own columns.
    /// </summary>
    /// <param name="input">[rows, seq, in]</param>
    public Tensor Apply(FusedLinear group, Tensor input)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(input);
        return Apply(_pool.UnitOf(group), input, group.Weight, group.Bias, group.Offsets);
    }

    /// <param name="offsets">Each member's first output column (unused for a single projection).</param>
    private Tensor Apply(AdapterPool.Unit unit, Tensor input, Tensor weight, Tensor? bias, IReadOnlyList<long> offsets)
    {
        using var scope = NewDisposeScope();
        // Sizes one at a time: every Tensor.shape is a native call and a new array, and this runs for every projection.
        var (rows, seq, inFeatures) = (input.size(0), input.size(1), input.size(2));
        var flat = input.reshape(rows * seq, inFeatures);
        var output = nn.functional.linear(flat, weight); // [tokens, Σ out]
        var width = (long)(_pool.Slots + 1) * _pool.MaxRank;
        // Decoding on a GPU: every slot's A at once, then only the row's own slot kept: [rows, members·(slots + 1)·maxRank].
        var lowRank = _pool.WholePoolDecode && seq == 1
            ? nn.functional.linear(flat, unit.A.view(-1, inFeatures)).mul_(Mask(unit.Members.Count, width))
            : null;
        for (var i = 0; i < unit.Members.Count; i++)
        {
            var projection = unit.Members[i];
            var outFeatures = projection.BT.size(2);
            var columns = unit.Members.Count == 1 ? output : output.narrow(1, offsets[i], outFeatures);
            if (lowRank is not null)
                columns.addmm_(lowRank.narrow(1, i * width, width), projection.BT.view(width, outFeatures));
            else
                columns.add_(Delta(projection, input, flat, outFeatures));
            if (_anyDora && projection.Scale is not null)
                columns.mul_(_onlySlot is { } only ? projection.Scale[only] : PerToken(projection.Scale.index_select(0, _slots), seq));
        }
        if (bias is not null) output.add_(bias); // after DoRA's scale, which must not touch it
        return output.view(rows, seq, output.size(1)).MoveToOuterDisposeScope();
    }

    /// <summary>B[slot] A[slot] x for each token, from its row's own matrices: [tokens, out].</summary>
    private Tensor Delta(AdapterPool.Projection projection, Tensor input, Tensor flat, long outFeatures)
    {
        if (_onlySlot is { } slot)
        {
            // Every row uses one adapter: two plain matmuls on its matrices, nothing gathered per row.
            return nn.functional.linear(flat, projection.A[slot].narrow(0, 0, _rank)).matmul(projection.BT[slot].narrow(0, 0, _rank));
        }
        var a = projection.A.narrow(1, 0, _rank).index_select(0, _slots);    // [rows, r, in]
        var bt = projection.BT.narrow(1, 0, _rank).index_select(0, _slots);  // [rows, r, out]
        return input.bmm(a.transpose(1, 2)).bmm(bt).view(-1, outFeatures);
    }

    /// <summary>[rows, ..] per row → [rows·seq, ..] per token.</summary>
    private static Tensor PerToken(Tensor perRow, long seq) =>
        seq == 1 ? perRow : perRow.unsqueeze(1).expand(perRow.size(0), seq, perRow.size(1)).reshape(-1, perRow.size(1));

    /// <summary>1 where a column's slot is the row's, 0 elsewhere, repeated for each member: made once per step.</summary>
    private Tensor Mask(int members, long width)
    {
        if (_masks.TryGetValue(members, out var mask)) return mask;
        using var scope = NewDisposeScope();
        using var rank = _pool.MaxRank.ToScalar(); // explicit and alive until the call returns (see TokenSampler's −∞)
        var columnSlot = arange(width, ScalarType.Int64, _slots.device).div_(rank, RoundingMode.floor);
        var one = columnSlot.unsqueeze(0).eq(_slots.unsqueeze(1)).to_type(_pool.Model.DType);
        mask = (members == 1 ? one : one.repeat(1, members)).DetachFromDisposeScope();
        _masks[members] = mask;
        return mask;
    }

    public void Dispose()
    {
        _slots.Dispose();
        foreach (var mask in _masks.Values) mask.Dispose();
    }
}
