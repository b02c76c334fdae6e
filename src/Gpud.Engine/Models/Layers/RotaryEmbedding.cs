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
    /// cos and a signed sin, each [batch, 1, seq, head_dim] (broadcast over heads), in <paramref name="dtype"/>: the
    /// sin's first half is negated, so that rotating is x·cos + roll(x, half)·sin — transformers' rotate_half
    /// (cat(−x₂, x₁)) folded into the angles, computed once per forward instead of in every layer for q and k.
    /// </summary>
    public (Tensor Cos, Tensor Sin) Angles(Tensor positionIds, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var freqs = positionIds.to_type(ScalarType.Float32).unsqueeze(-1) * _invFreq;
        var emb = cat([freqs, freqs], -1);
        var cos = emb.cos().to_type(dtype).unsqueeze(1);
        var sin = emb.sin();
        var half = sin.shape[^1] / 2;
        var signed = cat([-sin[.., .., ..(int)half], sin[.., .., (int)half..]], -1).to_type(dtype).unsqueeze(1);
        return (cos.MoveToOuterDisposeScope(), signed.MoveToOuterDisposeScope());
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
