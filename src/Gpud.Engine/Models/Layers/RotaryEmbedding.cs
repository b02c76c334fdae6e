using TorchSharp;
using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>
/// Rotary position embeddings with Hugging Face's frequency rules (<c>default</c>, <c>linear</c>, <c>llama3</c>):
/// inverse frequencies in float32, angles from explicit position ids so packed sequences can restart at 0.
/// </summary>
public sealed class RotaryEmbedding : IDisposable
{
    private readonly Tensor _invFreq;

    public RotaryEmbedding(ModelConfig config, Device device)
    {
        ArgumentNullException.ThrowIfNull(config);
        using var scope = NewDisposeScope();
        // The same float32 tensor ops as transformers, so angles match it bit for bit at long positions too.
        var exponents = arange(0, config.HeadDim, 2, ScalarType.Int64).to_type(ScalarType.Float32) / config.HeadDim;
        var invFreq = 1.0f / pow(full([exponents.shape[0]], (float)config.RopeTheta, ScalarType.Float32), exponents);
        if (config.RopeScaling is { } scaling) invFreq = Scale(invFreq, scaling);
        _invFreq = invFreq.to(device).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The angles of one forward pass for [batch, seq] positions, in <paramref name="dtype"/> (see <see cref="RotaryAngles"/>).
    /// </summary>
    public RotaryAngles Angles(Tensor positionIds, ScalarType dtype)
    {
        ArgumentNullException.ThrowIfNull(positionIds);
        using var scope = NewDisposeScope();
        var freqs = positionIds.to_type(ScalarType.Float32).unsqueeze(-1) * _invFreq;
        var emb = cat([freqs, freqs], -1);
        var cos = emb.cos().to_type(dtype).unsqueeze(1);
        var sin = emb.sin();
        var half = sin.size(-1) / 2;
        var signed = cat([-sin[.., .., ..(int)half], sin[.., .., (int)half..]], -1).to_type(dtype).unsqueeze(1);
        Tensor? rotation = null;
        if (positionIds.size(1) == 1)
        {
            // One token per row (a decode step): R[i, j] = cos[j] where i = j, signed sin[j] where i = j + half (mod
            // head_dim), so that x·R = x·cos + roll(x, half)·sin. Four kernels here, then one bmm per layer.
            var (batch, dim) = (positionIds.size(0), cos.size(-1));
            rotation = diag_embed(cos.view(batch, dim)).add_(diag_embed(signed.view(batch, dim)).roll(half, -2)).MoveToOuterDisposeScope();
        }
        return new RotaryAngles(cos.MoveToOuterDisposeScope(), signed.MoveToOuterDisposeScope(), rotation);
    }

    /// <summary>Rotates [batch, heads, seq, head_dim] queries or keys with <see cref="Angles"/>' cos and signed sin.</summary>
    /// <remarks>Three kernels (roll, mul, addcmul) and no views: decoding runs it twice per layer per token, and on a
    /// GPU each op's launch, not its arithmetic, is the cost.</remarks>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor signedSin)
    {
        ArgumentNullException.ThrowIfNull(x);
        using var rolled = x.roll(x.size(-1) / 2, -1);
        using var scaled = x * cos;
        using var one = 1.0.ToScalar(); // explicit and alive until the call returns (see TokenSampler's −∞)
        return scaled.addcmul(rolled, signedSin, one);
    }

    public void Dispose() => _invFreq.Dispose();

    private static Tensor Scale(Tensor invFreq, RopeScaling scaling)
    {
        switch (scaling.Type)
        {
            case "linear":
                return invFreq / scaling.Factor;
            case "llama3":
                // transformers' _compute_llama3_parameters.
                var factor = scaling.Factor;
                var low = scaling.LowFreqFactor;
                var high = scaling.HighFreqFactor;
                var oldContext = (double)scaling.OriginalMaxPositionEmbeddings;
                var lowFreqWavelen = oldContext / low;
                var highFreqWavelen = oldContext / high;
                var wavelen = 2 * Math.PI / invFreq;
                var scaled = where(wavelen > lowFreqWavelen, invFreq / factor, invFreq);
                var smooth = (oldContext / wavelen - low) / (high - low);
                var smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
                var medium = (wavelen < highFreqWavelen).logical_not().logical_and((wavelen > lowFreqWavelen).logical_not());
                return where(medium, smoothed, scaled);
            default:
                return invFreq;
        }
    }
}

/// <summary>
/// One forward pass's rotary angles: cos and a signed sin, each [batch, 1, seq, head_dim] (broadcast over heads), whose
/// first half is negated so that rotating is x·cos + roll(x, half)·sin (transformers' rotate_half, cat(−x₂, x₁), folded
/// into the angles once per forward instead of in every layer). For one token per row there is also the rotation as a
/// matrix [batch, head_dim, head_dim]: a decode step then rotates a layer's queries and keys with one batched matmul
/// instead of three elementwise kernels, and on a GPU a decode step costs what its kernel launches cost.
/// </summary>
public sealed class RotaryAngles(Tensor cos, Tensor signedSin, Tensor? rotation)
{
    public Tensor Cos { get; } = cos;

    public Tensor SignedSin { get; } = signedSin;

    /// <summary>[batch, head_dim, head_dim] when every row has one token; otherwise null.</summary>
    public Tensor? Rotation { get; } = rotation;

    /// <summary>Rotates [batch, heads, seq, head_dim] queries or keys.</summary>
    public Tensor Rotate(Tensor x)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (Rotation is null) return RotaryEmbedding.Apply(x, Cos, SignedSin);
        // [batch, heads, 1, d] → [batch, heads, d]: a view (a size-1 dimension's stride does not matter), then x·R per row.
        using var rows = x.view(x.size(0), x.size(1), x.size(3));
        using var rotated = rows.bmm(Rotation);
        return rotated.unsqueeze(2);
    }
}
