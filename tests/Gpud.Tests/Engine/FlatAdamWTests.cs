using Gpud.Engine.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

/// <summary>
/// The trainer's optimizer updates all adapter weights as one buffer; these tests hold it to torch.optim.AdamW's
/// trajectory (TorchSharp's per-parameter port, weight decay on matrices only, clip_grad_norm_ first).
/// </summary>
public sealed class FlatAdamWTests
{
    private static readonly long[][] Shapes = [[4, 6], [5, 4], [7]];

    private static List<Parameter> Parameters()
    {
        using var generator = new Generator(7, CPU);
        return Shapes.Select(shape => new Parameter(randn(shape, generator: generator))).ToList();
    }

    private static List<Parameter> Copy(IEnumerable<Parameter> parameters) =>
        parameters.Select(p => new Parameter(p.detach().clone())).ToList();

    /// <summary>A loss with a different, large gradient at every step (large enough that clipping acts).</summary>
    private static void Backward(List<Parameter> parameters, int step)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)(100 + step), CPU);
        var loss = zeros(1);
        foreach (var p in parameters) loss = loss + (p * randn(p.shape, generator: generator) * 3).sum() + p.pow(2).sum();
        loss.backward();
    }

    private static AdamW Reference(List<Parameter> parameters, double weightDecay) =>
        optim.AdamW(
        [
            new AdamW.ParamGroup(parameters.Where(p => p.dim() > 1), 1e-3, 0.9, 0.999, 1e-8, weightDecay, false, false),
            new AdamW.ParamGroup(parameters.Where(p => p.dim() <= 1), 1e-3, 0.9, 0.999, 1e-8, 0, false, false),
        ]);

    private static void ReferenceStep(AdamW optimizer, List<Parameter> parameters, double rate)
    {
        using (no_grad()) nn.utils.clip_grad_norm_(parameters, 1.0);
        foreach (var group in optimizer.ParamGroups) group.LearningRate = rate;
        optimizer.step();
        optimizer.zero_grad();
    }

    private static void FlatStep(FlatAdamW optimizer, double rate)
    {
        optimizer.ClipGradNorm(1.0).Dispose();
        optimizer.Step(rate);
        optimizer.ZeroGrad();
    }

    private static void AssertClose(List<Parameter> expected, List<Parameter> actual)
    {
        for (var i = 0; i < expected.Count; i++)
            Assert.True(expected[i].allclose(actual[i], rtol: 1e-5, atol: 1e-6), $"parameter {i} differs by {(expected[i] - actual[i]).abs().max().item<float>()}");
    }

    [Fact]
    public void Steps_follow_torch_AdamW_with_clipping_and_weight_decay_on_matrices_only()
    {
        var reference = Parameters();
        var flat = Copy(reference);
        using var torchAdamW = Reference(reference, weightDecay: 0.1);
        using var flatAdamW = new FlatAdamW(flat, 0.9, 0.999, 1e-8, weightDecay: 0.1);
        var start = Copy(reference);

        for (var step = 1; step <= 6; step++)
        {
            var rate = 0.05 / step;
            Backward(reference, step);
            ReferenceStep(torchAdamW, reference, rate);
            Backward(flat, step);
            FlatStep(flatAdamW, rate);
            AssertClose(reference, flat);
        }
        Assert.All(start.Zip(flat), p => Assert.False(p.First.allclose(p.Second), "the parameters never moved"));
    }

    [Fact]
    public void State_saved_by_torch_AdamW_in_an_earlier_checkpoint_resumes_the_same_trajectory()
    {
        var reference = Parameters();
        using var torchAdamW = Reference(reference, weightDecay: 0.1);
        for (var step = 1; step <= 3; step++)
        {
            Backward(reference, step);
            ReferenceStep(torchAdamW, reference, 0.05);
        }
        var path = Path.Combine(Path.GetTempPath(), $"gpud-optimizer-{Guid.NewGuid():N}.bin");
        try
        {
            torchAdamW.save_state_dict(path);
            var resumed = Copy(reference);
            using var flatAdamW = new FlatAdamW(resumed, 0.9, 0.999, 1e-8, weightDecay: 0.1);
            flatAdamW.LoadTorchSharpState(path);
            Assert.Equal(3, flatAdamW.Steps);

            for (var step = 4; step <= 6; step++)
            {
                Backward(reference, step);
                ReferenceStep(torchAdamW, reference, 0.05);
                Backward(resumed, step);
                FlatStep(flatAdamW, 0.05);
                AssertClose(reference, resumed);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
    /// <summary>
    /// bf16 training multiplies by the optimizer's bf16 copies instead of casting every matrix in every forward pass.
    /// That must change nothing: two micro-batches a step (gradients gathered in float32 between them) over four steps
    /// land on the weights that casting gives, bit for bit, and the copies are the casts of the updated weights.
    /// </summary>
    [Fact]
    public void Bf16_compute_copies_follow_the_trajectory_of_casting_in_every_forward_pass_bit_for_bit()
    {
        using var generator = new Generator(3, CPU);
        var start = new[] { randn([8, 32], generator: generator) * 0.1, randn([24, 8], generator: generator) * 0.1 };
        var inputs = Enumerable.Range(0, 8).Select(_ => randn([16, 32], generator: generator).to_type(ScalarType.BFloat16)).ToList();
        var targets = Enumerable.Range(0, 8).Select(_ => randn([16, 24], generator: generator).to_type(ScalarType.BFloat16)).ToList();

        List<Parameter> Train(bool copies)
        {
            var parameters = start.Select(t => new Parameter(t.clone())).ToList();
            using var optimizer = new FlatAdamW(parameters, computeDtype: copies ? ScalarType.BFloat16 : null);
            var (a, b) = copies
                ? ((Tensor)optimizer.ComputeCopy(parameters[0])!, (Tensor)optimizer.ComputeCopy(parameters[1])!)
                : (null!, null!);
            for (var step = 0; step < 4; step++)
            {
                for (var micro = 0; micro < 2; micro++)
                {
                    using var scope = NewDisposeScope();
                    var (x, y) = (inputs[2 * step + micro], targets[2 * step + micro]);
                    var output = copies
                        ? nn.functional.linear(nn.functional.linear(x, a), b)
                        : nn.functional.linear(nn.functional.linear(x, parameters[0].to_type(ScalarType.BFloat16)), parameters[1].to_type(ScalarType.BFloat16));
                    (output - y).pow(2).sum().backward();
                    optimizer.AccumulateComputeGradients();
                }
                FlatStep(optimizer, 0.01);
            }
            if (copies)
            {
                using var cast = parameters[1].to_type(ScalarType.BFloat16);
                Assert.True(cast.equal(b).all().item<bool>(), "the copies are not the casts of the updated weights");
            }
            return parameters.Select(p => new Parameter(p.detach().clone())).ToList();
        }

        var casting = Train(copies: false);
        var copied = Train(copies: true);
        for (var i = 0; i < casting.Count; i++)
        {
            Assert.False(casting[i].equal(start[i]).all().item<bool>(), "the weights never moved");
            Assert.True(casting[i].equal(copied[i]).all().item<bool>(), $"parameter {i} differs by {(casting[i] - copied[i]).abs().max().item<float>():g3}");
        }
    }
}
