using Gpud.Engine.Models.Layers;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class PackedSegmentsTests
{
    /// <summary>
    /// Per-sequence attention over packed rows must equal attention under the block-diagonal causal mask it replaces,
    /// in the outputs of real tokens and in the gradients that reach queries, keys and values (what training uses);
    /// with a sliding window (Mistral), only the last <paramref name="window"/> positions of a token's own sequence.
    /// </summary>
    [Theory]
    [InlineData(null)]
    [InlineData(3)]
    public void Attending_sequence_by_sequence_equals_the_block_diagonal_mask_forward_and_backward(int? window)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator(7);
        int[][] rows = [[5, 3, 4, 1], [7, 2]]; // lengths in four length classes; the second row ends in 3 padding slots
        const long width = 13, heads = 4, kvHeads = 2, headDim = 8;
        Tensor Leaf(long h) => randn([rows.Length, h, width, headDim], generator: generator).requires_grad_(true);
        var (q1, k1, v1) = (Leaf(heads), Leaf(kvHeads), Leaf(kvHeads));
        var (q2, k2, v2) = (q1.detach().clone().requires_grad_(true), k1.detach().clone().requires_grad_(true), v1.detach().clone().requires_grad_(true));
        static Tensor RepeatKv(Tensor x) => x.repeat_interleave(heads / kvHeads, 1);

        // Reference: dense [batch, 1, width, width] mask, true where a token may see another of its own sequence.
        var segment = new long[rows.Length, width];
        var real = new bool[rows.Length, width];
        for (var r = 0; r < rows.Length; r++)
        {
            var t = 0;
            for (var s = 0; s < rows[r].Length; s++)
                for (var i = 0; i < rows[r][s]; i++, t++) (segment[r, t], real[r, t]) = (s, true);
            for (; t < width; t++) segment[r, t] = -1 - t;
        }
        var ids = tensor(segment);
        var mask = ((ids.unsqueeze(2) == ids.unsqueeze(1)) & ones([width, width], ScalarType.Bool).tril()).unsqueeze(1);
        if (window is { } w) mask &= ones([width, width], ScalarType.Bool).triu(1 - w); // query i sees keys i - w + 1 .. i
        var expected = nn.functional.scaled_dot_product_attention(q1, RepeatKv(k1), RepeatKv(v1), mask, 0.0, false)
            .transpose(1, 2).reshape(rows.Length, width, heads * headDim);

        using var segments = PackedSegments.Create(rows.Select(r => (IReadOnlyList<int>)r).ToList(), width, CPU);
        var actual = segments.Attend(q2, k2, v2, RepeatKv, window);

        var keep = tensor(real).unsqueeze(-1).to_type(ScalarType.Float32);
        Assert.True((actual * keep).allclose(expected * keep, rtol: 1e-5, atol: 1e-6));
        Assert.Equal(0.0, actual[1, 9..].abs().sum().item<float>()); // padding gets no attention output

        var weights = randn([rows.Length, width, heads * headDim], generator: generator) * keep;
        (expected * weights).sum().backward();
        (actual * weights).sum().backward();
        Assert.True(q2.grad!.allclose(q1.grad!, rtol: 1e-4, atol: 1e-6));
        Assert.True(k2.grad!.allclose(k1.grad!, rtol: 1e-4, atol: 1e-6));
        Assert.True(v2.grad!.allclose(v1.grad!, rtol: 1e-4, atol: 1e-6));
    }
}
