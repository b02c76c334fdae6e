using static TorchSharp.torch;

namespace Gpud.CudaTests;

/// <summary>
/// gpud's attention calls libtorch's SDPA, which on Hopper picks the flash kernel for bf16. These check that the kernel
/// is enabled and agrees with the math backend and with attention written out by hand in float32.
/// </summary>
public sealed class AttentionTests
{
    [Fact]
    public void Flash_sdpa_is_enabled_and_matches_math_and_a_float32_reference()
    {
        var device = Gpu.Require();
        Assert.True(backends.cuda.flash_sdp_enabled(), "libtorch's flash SDPA backend is disabled");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var generator = new Generator(7, device);
        // [batch, heads, seq, head_dim] as gpud's attention passes them (GQA already expanded).
        var q = randn([2, 16, 1024, 64], ScalarType.BFloat16, device, generator: generator);
        var k = randn([2, 16, 1024, 64], ScalarType.BFloat16, device, generator: generator);
        var v = randn([2, 16, 1024, 64], ScalarType.BFloat16, device, generator: generator);

        var flash = nn.functional.scaled_dot_product_attention(q, k, v, null, 0.0, true);
        Tensor math;
        backends.cuda.enable_flash_sdp(false);
        try
        {
            math = nn.functional.scaled_dot_product_attention(q, k, v, null, 0.0, true);
        }
        finally
        {
            backends.cuda.enable_flash_sdp(true);
        }

        var scores = q.to(ScalarType.Float32).matmul(k.to(ScalarType.Float32).transpose(-2, -1)) / Math.Sqrt(64);
        var causal = ones(1024, 1024, ScalarType.Bool, device).tril();
        var reference = scores.masked_fill(causal.logical_not(), double.NegativeInfinity).softmax(-1).matmul(v.to(ScalarType.Float32));

        var flashError = (flash.to(ScalarType.Float32) - reference).abs().max().item<float>();
        var mathError = (math.to(ScalarType.Float32) - reference).abs().max().item<float>();
        Assert.True(flashError < 2e-2, $"flash vs float32 reference: max |difference| = {flashError:g3}");
        Assert.True(mathError < 2e-2, $"math vs float32 reference: max |difference| = {mathError:g3}");
    }

    [Fact]
    public void A_boolean_padding_mask_gives_the_same_rows_as_attention_without_padding()
    {
        var device = Gpu.Require();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var generator = new Generator(11, device);
        var q = randn([1, 8, 300, 64], ScalarType.BFloat16, device, generator: generator);
        var k = randn([1, 8, 300, 64], ScalarType.BFloat16, device, generator: generator);
        var v = randn([1, 8, 300, 64], ScalarType.BFloat16, device, generator: generator);
        // Left-padded by 44 positions, as a batch of unequal prompts is: the real rows must not see the padding.
        var padded = (Tensor x) => cat([zeros([1, 8, 44, 64], ScalarType.BFloat16, device), x], 2);
        var keep = ones(344, 344, ScalarType.Bool, device).tril();
        keep[.., ..44] = false;
        keep[TensorIndex.Slice(0, 44), TensorIndex.Slice(0, 44)] = eye(44, dtype: ScalarType.Bool, device: device);
        var masked = nn.functional.scaled_dot_product_attention(padded(q), padded(k), padded(v), keep.view(1, 1, 344, 344), 0.0, false);
        var plain = nn.functional.scaled_dot_product_attention(q, k, v, null, 0.0, true);
        var error = (masked[.., .., 44.., ..].to(ScalarType.Float32) - plain.to(ScalarType.Float32)).abs().max().item<float>();
        Assert.True(error < 2e-2, $"masked vs unpadded: max |difference| = {error:g3}");
    }
}
