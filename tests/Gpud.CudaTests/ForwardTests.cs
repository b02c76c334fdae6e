using Gpud.Engine.Models;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.CudaTests;

/// <summary>The forward pass on CUDA against the float64 transformers reference logits the CPU tests also use.</summary>
public sealed class ForwardTests
{
    public static TheoryData<string> Models => new() { "gpud-tiny", "llama3-tiny", "mistral-tiny", "qwen2-tiny", "qwen3-tiny" };

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
        var (maxAbs, agree) = Gpu.Compare(reference, logits);
        using var spread = reference.abs().max();
        // bf16 keeps 8 bits of mantissa: a few percent of the logits' range, and nearly always the same top token.
        Assert.True(maxAbs < 0.05 * spread.item<float>() + 0.05, $"max |logit difference| = {maxAbs:g3} (logits up to {spread.item<float>():g3})");
        Assert.True(agree >= 0.9, $"top-1 agreement {agree:P0}");
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
