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
        using var generator = new Generator(7); // CPU: TorchSharp's generators are CPU-only
        // [batch, heads, seq, head_dim] as gpud's attention passes them (GQA already expanded).
        var q = randn([2, 16, 1024, 64], generator: generator).to(ScalarType.BFloat16, device);
        var k = randn([2, 16, 1024, 64], generator: generator).to(ScalarType.BFloat16, device);
        var v = randn([2, 16, 1024, 64], generator: generator).to(ScalarType.BFloat16, device);

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
        using var generator = new Generator(11); // CPU: TorchSharp's generators are CPU-only
        var q = randn([1, 8, 300, 64], generator: generator).to(ScalarType.BFloat16, device);
        var k = randn([1, 8, 300, 64], generator: generator).to(ScalarType.BFloat16, device);
        var v = randn([1, 8, 300, 64], generator: generator).to(ScalarType.BFloat16, device);
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

    [Fact]
    public void Packed_sequences_attended_one_by_one_in_bf16_match_a_float32_block_diagonal_reference_forward_and_backward()
    {
        var device = Gpu.Require();
        using var scope = NewDisposeScope();
        using var generator = new Generator(13); // CPU: TorchSharp's generators are CPU-only
        // Two packed training rows of 2048 positions (GQA 32/8 heads of 64, as a 1B Llama): sequences of mixed lengths.
        int[][] rows = [[700, 300, 1000, 48], [1500, 129, 200]];
        const long width = 2048, heads = 32, kvHeads = 8, headDim = 64;
        Tensor Leaf(long h) => randn([rows.Length, h, width, headDim], generator: generator).to(ScalarType.BFloat16, device).requires_grad_(true);
        var (q, k, v) = (Leaf(heads), Leaf(kvHeads), Leaf(kvHeads));
        static Tensor RepeatKv(Tensor x) => x.repeat_interleave(heads / kvHeads, 1);

        using var segments = Gpud.Engine.Models.Layers.PackedSegments.Create(rows.Select(r => (IReadOnlyList<int>)r).ToList(), width, device);
        var actual = segments.Attend(q, k, v, RepeatKv);
        var weights = randn([rows.Length, width, heads * headDim], generator: generator).to(ScalarType.Float32, device);
        (actual.to(ScalarType.Float32) * weights).sum().backward();

        // Reference in float32 under the dense block-diagonal causal mask, on the same inputs.
        var (q32, k32, v32) = (q.detach().to(ScalarType.Float32).requires_grad_(true), k.detach().to(ScalarType.Float32).requires_grad_(true), v.detach().to(ScalarType.Float32).requires_grad_(true));
        var segment = zeros([rows.Length, width], ScalarType.Int64);
        var real = zeros([rows.Length, width], ScalarType.Bool);
        for (var r = 0; r < rows.Length; r++)
        {
            long t = 0;
            for (var s = 0; s < rows[r].Length; s++, t += rows[r][s - 1]) segment[r, TensorIndex.Slice(t, t + rows[r][s])] = s;
            real[r, TensorIndex.Slice(0, t)] = true;
            segment[r, TensorIndex.Slice(t, width)] = -1;
        }
        segment = segment.to(device);
        var mask = ((segment.unsqueeze(2) == segment.unsqueeze(1)) & ones([width, width], ScalarType.Bool, device).tril()).unsqueeze(1);
        var expected = nn.functional.scaled_dot_product_attention(q32, RepeatKv(k32), RepeatKv(v32), mask, 0.0, false)
            .transpose(1, 2).reshape(rows.Length, width, heads * headDim);
        var keep = real.to(device).unsqueeze(-1).to(ScalarType.Float32);
        (expected * keep * weights).sum().backward();

        var forward = ((actual.to(ScalarType.Float32) - expected) * keep).abs().max().item<float>();
        Assert.True(forward < 2e-2, $"packed bf16 vs float32 mask: max |difference| = {forward:g3}");
        foreach (var (name, got, want) in new[] { ("q", q.grad!, q32.grad!), ("k", k.grad!, k32.grad!), ("v", v.grad!, v32.grad!) })
        {
            var relative = ((got.to(ScalarType.Float32) - want).norm() / want.norm()).item<float>();
            Assert.True(relative < 2e-2, $"d{name}: relative error {relative:g3}");
        }
    }
}
