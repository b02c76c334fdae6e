using static TorchSharp.torch;

namespace Gpud.Engine.Lora;

/// <summary>
/// Uniform [0, 1) numbers drawn on any device from one seed: SplitMix64's finalizer over each element's index, as
/// counter-based generators (Philox in PyTorch's CUDA generator) do. TorchSharp's generators are CPU-only, and a
/// dropout mask drawn on the CPU and copied to the GPU costs more than the layer it masks; here the seed comes from the
/// job's CPU generator (one draw, so checkpoints and recomputation replay it) and the numbers are made where the tensor
/// lives, the same on the CPU and on CUDA.
/// </summary>
public static class CounterRandom
{
    private const long Gamma = unchecked((long)0x9E3779B97F4A7C15);
    private const long Mix1 = unchecked((long)0xBF58476D1CE4E5B9);
    private const long Mix2 = unchecked((long)0x94D049BB133111EB);

    public static Tensor Uniform(long[] shape, Device device, Generator? generator)
    {
        using var scope = NewDisposeScope();
        var seed = randint(long.MaxValue, [1], ScalarType.Int64, generator: generator).item<long>();
        var count = shape.Aggregate(1L, (a, b) => a * b);
        // Integer products wrap modulo 2^64 on the CPU and on CUDA alike, which SplitMix64 relies on.
        var z = arange(count, ScalarType.Int64, device).mul_(Gamma).add_(seed);
        z = z.bitwise_xor(ShiftRight(z, 30)).mul_(Mix1);
        z = z.bitwise_xor(ShiftRight(z, 27)).mul_(Mix2);
        z = z.bitwise_xor(ShiftRight(z, 31));
        // The top 24 bits: exact in float32.
        return (ShiftRight(z, 40).to_type(ScalarType.Float32) / (1 << 24)).reshape(shape).MoveToOuterDisposeScope();
    }

    // A logical shift: libtorch shifts signed integers arithmetically, so the sign's copies are masked off.
    private static Tensor ShiftRight(Tensor z, int bits) => z.bitwise_right_shift(bits).bitwise_and((1L << (64 - bits)) - 1);
}
