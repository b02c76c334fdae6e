using Gpud.Engine.Models;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.CudaTests;

/// <summary>The forward pass on CUDA against the float64 transformers reference logits the CPU tests also use.</summary>
public sealed class ForwardTests
{
    public static TheoryData<string> Models => new() { "gpud-tiny", "llama3-tiny", "mistral-tiny", "mistral-sw-tiny", "qwen2-tiny", "qwen3-tiny" };

    [Theory]
    [MemberData(nameof(Models))]
    public void Float32_logits_on_cuda_match_the_reference(string name)
    {
        var device = Gpu.Require();
        var (reference, logits) = Run(name, device, ScalarType.Float32);
        var (maxAbs, agree) = Gpu.Compare(reference, logits);
        Assert.True(maxAbs < 1e-3, $"max |logit difference| = {maxAbs:g3}");
        Assert.Equal(1.0, agree);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Bfloat16_logits_on_cuda_follow_the_float32_reference(string name)
    {
        var device = Gpu.Require();
        var (reference, logits) = Run(name, device, ScalarType.BFloat16);
        var (maxAbs, _) = Gpu.Compare(reference, logits);
        using var spread = reference.abs().max();
        // bf16 keeps 8 bits of mantissa: a few percent of the logits' range.
        Assert.True(maxAbs < 0.05 * spread.item<float>() + 0.05, $"max |logit difference| = {maxAbs:g3} (logits up to {spread.item<float>():g3})");

        // The top token may differ only where the float32 logits nearly tie. The reference holds 6 positions, and
        // random tiny models tie often (mistral-tiny's top two differ by 0.015 at 3 of them), so one flip there would
        // say nothing: count over 512 positions of random text against float32 on the same device.
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var vocab = reference.size(-1);
        var generator = new TorchSharp.torch.Generator(7);
        var ids = randint(0, vocab, [4, 128], generator: generator, dtype: ScalarType.Int64).to(device);
        var exact = Logits(name, device, ScalarType.Float32, ids);
        var rounded = Logits(name, device, ScalarType.BFloat16, ids);
        var (_, agree) = Gpu.Compare(exact, rounded);
        using var diff = (exact - rounded.to(ScalarType.Float32)).abs();
        var meanAbs = diff.mean().item<float>();
        var range = exact.abs().max().item<float>();
        TestContext.Current.TestOutputHelper?.WriteLine($"{name}: mean |bf16 - f32| = {meanAbs:g3} (logits up to {range:g3}), top-1 agreement {agree:P1} over 512 positions");
        Assert.True(meanAbs < 0.01 * range, $"mean |logit difference| = {meanAbs:g3} (logits up to {range:g3})");
        Assert.True(agree >= 0.9, $"top-1 agreement {agree:P1} over 512 positions");
    }

    private static Tensor Logits(string name, Device device, ScalarType dtype, Tensor ids)
    {
        using var model = CausalLanguageModel.Load(Gpu.Fixture($"models/{name}"), device, dtype);
        using var positions = arange(ids.size(1), ScalarType.Int64, device).unsqueeze(0).expand(ids.size(0), -1);
        using var hidden = model.Hidden(ids, positions);
        return model.Logits(hidden).to(ScalarType.Float32);
    }

    private static (Tensor Reference, Tensor Logits) Run(string name, Device device, ScalarType dtype)
    {
        var fixture = LogitsFixture.Load(Gpu.Fixture($"logits/{name}.json"));
        var reference = tensor(fixture.Logits.SelectMany(s => s.SelectMany(p => p)).ToArray()).view(fixture.Logits.Length, fixture.Last, -1);

        using var model = CausalLanguageModel.Load(Gpu.Fixture($"models/{name}"), device, dtype);
        Assert.All(model.parameters(), p => Assert.Equal(dtype, p.dtype)); // the frozen base really runs in this dtype
        using var _ = no_grad();
        using var ids = tensor(fixture.InputIds, ScalarType.Int64, device);
        using var positions = arange(ids.shape[1], ScalarType.Int64, device).unsqueeze(0).expand(ids.shape[0], -1);
        using var hidden = model.Hidden(ids, positions);
        var logits = model.Logits(hidden)[.., ^fixture.Last.., ..];
        return (reference, logits);
    }
}
