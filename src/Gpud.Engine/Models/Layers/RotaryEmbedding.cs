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

    /// <summary>cos and sin, each [batch, seq, head_dim], in <paramref name="dtype"/>.</summary>
    public (Tensor Cos, Tensor Sin) Angles(Tensor positionIds, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var freqs = positionIds.to_type(ScalarType.Float32).unsqueeze(-1) * _invFreq;
        var emb = cat([freqs, freqs], -1);
        var cos = emb.cos().to_type(dtype);
        var sin = emb.sin().to_type(dtype);
        return (cos.MoveToOuterDisposeScope(), sin.MoveToOuterDisposeScope());
    }

    /// <summary>Rotates [batch, heads, seq, head_dim] queries or keys.</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var c = cos.unsqueeze(1);
        var s = sin.unsqueeze(1);
        var half = x.shape[^1] / 2;
        var rotated = cat([-x[.., .., .., (int)half..], x[.., .., .., ..(int)half]], -1);
        return (x * c + rotated * s).MoveToOuterDisposeScope();
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
