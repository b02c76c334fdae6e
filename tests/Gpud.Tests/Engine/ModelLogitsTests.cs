using System.Text.Json;
using Gpud.Engine.Models;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

/// <summary>
/// gpud's Llama-family forward pass against reference logits (scripts/fixtures/make_model_fixtures.py: a float64
/// reference written from transformers' modeling code) for gpud-tiny, Llama 3 (llama3 RoPE scaling, bf16 on disk), Mistral
/// (explicit head_dim, f16 on disk; and with a 5-position sliding window over 12-token inputs), Qwen2 (q/k/v bias, tied embeddings, sharded) and Qwen3 (per-head q/k RMSNorm,
/// explicit head_dim, bf16 on disk) checkpoints.
/// </summary>
public sealed class ModelLogitsTests
{
    public static TheoryData<string> Models => new() { "gpud-tiny", "llama3-tiny", "mistral-tiny", "mistral-sw-tiny", "qwen2-tiny", "qwen3-tiny" };

    [Theory]
    [MemberData(nameof(Models))]
    public void Logits_match_the_reference_in_float32(string name)
    {
        var fixture = LogitsFixture.Load(Repo.File($"tests/fixtures/logits/{name}.json"));
        using var model = CausalLanguageModel.Load(Repo.File($"tests/fixtures/models/{name}"), CPU, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var _ = no_grad();

        var ids = tensor(fixture.InputIds, ScalarType.Int64);
        var positions = arange(ids.shape[1], ScalarType.Int64).unsqueeze(0).expand(ids.shape[0], -1);
        var logits = model.Logits(model.Hidden(ids, positions));
        var last = logits[.., ^fixture.Last.., ..];

        AssertClose(fixture.Logits, last);
    }

    [Theory]
    [MemberData(nameof(Models))]
    public void Decoding_through_the_kv_cache_gives_the_same_logits(string name)
    {
        var fixture = LogitsFixture.Load(Repo.File($"tests/fixtures/logits/{name}.json"));
        using var model = CausalLanguageModel.Load(Repo.File($"tests/fixtures/models/{name}"), CPU, ScalarType.Float32);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = tensor(fixture.InputIds, ScalarType.Int64);
        var (batch, length) = (ids.shape[0], ids.shape[1]);
        var cache = model.NewCache(batch, length);

        // Prefill all but the last positions in two chunks (the second one attends to the first through the cache),
        // then decode one token at a time.
        var prefill = length - fixture.Last;
        Tensor Step(long start, long count) =>
            model.Logits(model.Hidden(ids[.., (int)start..(int)(start + count)],
                arange(start, start + count, 1, ScalarType.Int64).unsqueeze(0).expand(batch, -1), cache: cache));
        Step(0, prefill - 4);
        Step(prefill - 4, 4);
        var steps = new List<Tensor>();
        for (var p = prefill; p < length; p++) steps.Add(Step(p, 1));

        AssertClose(fixture.Logits, cat(steps, 1));
        foreach (var layer in cache) layer.Dispose();
    }

    [Fact]
    public void Parameters_carry_hugging_face_names_and_are_frozen()
    {
        using var untied = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/llama3-tiny"), CPU, ScalarType.Float32);
        var names = untied.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("model.embed_tokens.weight", names);
        Assert.Contains("model.layers.1.self_attn.q_proj.weight", names);
        Assert.Contains("model.layers.0.mlp.down_proj.weight", names);
        Assert.Contains("model.norm.weight", names);
        Assert.Contains("lm_head.weight", names);
        Assert.Equal(2 * 9 + 3, names.Count);
        Assert.All(untied.parameters(), p => Assert.False(p.requires_grad));

        using var tied = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/qwen2-tiny"), CPU, ScalarType.Float32);
        var qwen = tied.named_parameters().Select(p => p.name).ToList();
        Assert.Contains("model.layers.2.self_attn.k_proj.bias", qwen);
        Assert.DoesNotContain("model.layers.2.self_attn.o_proj.bias", qwen);
        Assert.DoesNotContain("lm_head.weight", qwen);
        // 121,568 as make_model_fixtures.py counts them; ParameterCount leaves out the 3 layers' q/k/v biases (64+16+16).
        Assert.Equal(121_568L, tied.parameters().Sum(p => p.numel()));
        Assert.Equal(121_568L - 3 * (64 + 16 + 16), tied.Config.ParameterCount);
    }

    private static void AssertClose(float[][][] expected, Tensor actual)
    {
        var values = actual.contiguous().data<float>().ToArray();
        var vocab = expected[0][0].Length;
        var worst = 0.0;
        for (var b = 0; b < expected.Length; b++)
        for (var t = 0; t < expected[b].Length; t++)
        for (var v = 0; v < vocab; v++)
            worst = Math.Max(worst, Math.Abs(expected[b][t][v] - values[(b * expected[b].Length + t) * vocab + v]));
        Assert.True(worst < 1e-4, $"max |logit difference| = {worst:g3}");
    }
}
