using System.Text.Json;
using Gpud.Engine.Models;
using TorchSharp;
using static TorchSharp.torch;

// One test at a time: the tests share one GPU, and the out-of-memory test fills it on purpose (a test running beside
// it would fail for want of memory it did not cause).
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Gpud.CudaTests;

/// <summary>
/// The lane's gate: a test that needs CUDA calls <see cref="Require"/> first. Without a usable CUDA device the test is
/// reported skipped with the reason; scripts/gpu/run sets GPUD_REQUIRE_CUDA=1 so that on the GPU machine a backend that
/// failed to load fails the lane instead of skipping it.
/// </summary>
internal static class Gpu
{
    private static readonly Lazy<string?> Unavailable = new(() =>
    {
        try
        {
            return cuda.is_available() ? null : $"no CUDA device (libtorch {__version__} reports none)";
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or NotSupportedException)
        {
            return $"libtorch could not be loaded: {e.GetBaseException().Message}";
        }
    });

    public static Device Require()
    {
        var reason = Unavailable.Value;
        if (reason is null) return new Device("cuda:0");
        if (Environment.GetEnvironmentVariable("GPUD_REQUIRE_CUDA") == "1") Assert.Fail($"GPUD_REQUIRE_CUDA=1, but {reason}");
        Assert.Skip($"CUDA lane: {reason}. Run it on a GPU machine with scripts/gpu/run test.");
        return CPU; // not reached: Skip throws
    }

    /// <summary>A fixture that travels with this program (copied from tests/fixtures).</summary>
    public static string Fixture(string relative) => Path.Combine(AppContext.BaseDirectory, "fixtures", relative);

    /// <summary>Largest absolute difference, and the share of positions whose top token agrees.</summary>
    public static (double MaxAbs, double Top1Agreement) Compare(Tensor expected, Tensor actual)
    {
        using var scope = NewDisposeScope();
        var e = expected.to(ScalarType.Float32, CPU);
        var a = actual.to(ScalarType.Float32, CPU);
        var maxAbs = (e - a).abs().max().item<float>();
        var agree = e.argmax(-1).eq(a.argmax(-1)).to(ScalarType.Float32).mean().item<float>();
        return (maxAbs, agree);
    }
}

/// <summary>Configs for shapes too large to ship as fixtures (weights from <see cref="RandomWeights"/>).</summary>
internal static class Configs
{
    public static ModelConfig Llama(int hidden, int layers, int heads, int kvHeads, int intermediate, int vocab) =>
        ModelConfig.Parse(JsonDocument.Parse(JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" },
            ["model_type"] = "llama",
            ["hidden_size"] = hidden,
            ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads,
            ["num_key_value_heads"] = kvHeads,
            ["intermediate_size"] = intermediate,
            ["vocab_size"] = vocab,
            ["max_position_embeddings"] = 131072,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 500000.0,
            ["tie_word_embeddings"] = false,
            ["eos_token_id"] = 1,
        })).RootElement);
}
