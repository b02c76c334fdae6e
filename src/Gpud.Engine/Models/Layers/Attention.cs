using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>
/// Grouped-query self-attention (<c>self_attn</c>: q/k/v/o projections). libtorch's SDPA has no GQA flag in
/// TorchSharp, so key/value heads are expanded to the query heads first, as transformers' <c>repeat_kv</c> does.
/// </summary>
public sealed class Attention : nn.Module
{
    private readonly int _heads;
    private readonly int _kvHeads;
    private readonly int _headDim;
    private readonly int? _window;

    public Attention(ModelConfig config, WeightLoader weights, string prefix) : base(prefix)
    {
        ArgumentNullException.ThrowIfNull(config);
        _heads = config.NumHeads;
        _kvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        _window = config.SlidingWindow;
        Qkv = new FusedLinear(weights,
            [($"{prefix}.q_proj", (long)_heads * _headDim), ($"{prefix}.k_proj", (long)_kvHeads * _headDim), ($"{prefix}.v_proj", (long)_kvHeads * _headDim)],
            config.HiddenSize, config.QkvBias);
        OProj = new BaseLinear(weights, $"{prefix}.o_proj", (long)_heads * _headDim, config.HiddenSize, config.OutputBias);
        register_module("q_proj", QProj);
        register_module("k_proj", KProj);
        register_module("v_proj", VProj);
        register_module("o_proj", OProj);
        if (config.QkNorm)
        {
            QNorm = new RmsNorm(weights, $"{prefix}.q_norm", _headDim, config.RmsNormEps);
            KNorm = new RmsNorm(weights, $"{prefix}.k_norm", _headDim, config.RmsNormEps);
            register_module("q_norm", QNorm);
            register_module("k_norm", KNorm);
        }
    }

    /// <summary>q_proj, k_proj and v_proj, projected in one matmul.</summary>
    public FusedLinear Qkv { get; }

    public BaseLinear QProj => Qkv.Members[0];
    public BaseLinear KProj => Qkv.Members[1];
    public BaseLinear VProj => Qkv.Members[2];
    public BaseLinear OProj { get; }

    /// <summary>Qwen3's RMSNorm over each query head (null for other families).</summary>
    public RmsNorm? QNorm { get; }

    /// <summary>Qwen3's RMSNorm over each key head.</summary>
    public RmsNorm? KNorm { get; }

    /// <param name="hidden">[batch, seq, hidden]</param>
    /// <param name="mask">null for plain causal attention over <paramref name="hidden"/>; otherwise a boolean (true = may
    /// attend) or additive (0 / −∞) [batch, 1, seq, keys] mask, for padding, packing or a KV cache.</param>
    /// <param name="cache">This layer's key/value cache, or null.</param>
    /// <param name="adapters">Per-row serving adapters, or null.</param>
    /// <param name="segments">The sequences of packed rows (training), attended to one by one; then
    /// <paramref name="mask"/> and <paramref name="cache"/> are null.</param>
    public Tensor Forward(Tensor hidden, RotaryAngles angles, Tensor? mask, IKvCache? cache, Lora.BatchLora? adapters = null,
        PackedSegments? segments = null)
    {
        using var scope = NewDisposeScope();
        var batch = hidden.size(0);
        var seq = hidden.size(1);
        // [b, heads + 2·kv_heads, seq, d]: query heads, then key heads, then value heads (views of one matmul's output).
        var heads = Qkv.Project(hidden, adapters).view(batch, seq, _heads + 2 * _kvHeads, _headDim).transpose(1, 2);
        var v = heads.narrow(1, _heads + _kvHeads, _kvHeads);
        Tensor q, k;
        if (QNorm is null)
        {
            // Queries and keys share the angles: one rotation for both.
            var rotated = angles.Rotate(heads.narrow(1, 0, _heads + _kvHeads));
            (q, k) = (rotated.narrow(1, 0, _heads), rotated.narrow(1, _heads, _kvHeads));
        }
        else
        {
            q = angles.Rotate(QNorm.forward(heads.narrow(1, 0, _heads)));
            k = angles.Rotate(KNorm!.forward(heads.narrow(1, _heads, _kvHeads)));
        }
        if (cache is not null) (k, v) = cache.Append(k, v);

        Tensor merged;
        if (segments is not null)
        {
            merged = segments.Attend(q, k, v, RepeatKv, _window);
        }
        else if (cache is not null && mask is not null && _heads != _kvHeads)
        {
            // New tokens against a cache (decoding; a mixed step's rows): fold each KV head's query group into that
            // head's query positions instead of copying every cached key and value once per query head.
            // [b, heads, s, d] → [b, kv, group·s, d]; each query position's mask row is repeated for the group's heads
            // (a [b, 1, 1, keys] mask just broadcasts). Same dot products, no copy of the cache.
            var group = _heads / _kvHeads;
            var grouped = q.reshape(batch, _kvHeads, group * seq, _headDim);
            var keys = mask.size(-1);
            var groupMask = seq == 1 ? mask : mask.unsqueeze(2).expand(batch, 1, group, seq, keys).reshape(batch, 1, group * seq, keys);
            merged = nn.functional.scaled_dot_product_attention(grouped, k, v, groupMask, 0.0, false)
                .reshape(batch, _heads, seq, _headDim).transpose(1, 2).reshape(batch, seq, (long)_heads * _headDim);
        }
        else
        {
            var attended = nn.functional.scaled_dot_product_attention(q, RepeatKv(k), RepeatKv(v), mask, 0.0, mask is null && seq > 1);
            merged = attended.transpose(1, 2).reshape(batch, seq, (long)_heads * _headDim);
        }
        return OProj.Project(merged, adapters).MoveToOuterDisposeScope();
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing) Qkv.Dispose();
        base.Dispose(disposing);
    }

    private Tensor RepeatKv(Tensor x)
    {
        if (_heads == _kvHeads) return x;
        var (batch, keys) = (x.size(0), x.size(2));
        return x.unsqueeze(2).expand(batch, _kvHeads, _heads / _kvHeads, keys, _headDim).reshape(batch, _heads, keys, _headDim);
    }
}
