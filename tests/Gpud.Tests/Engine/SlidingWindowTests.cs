using System.Text.Json;
using Gpud.Engine.Generation;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Engine.Training;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

/// <summary>
/// Mistral's sliding-window attention (Mistral 7B v0.1 and its fine-tunes: 4096 positions). mistral-sw-tiny has a
/// 5-position window; its forward pass is held to the transformers reference in <see cref="ModelLogitsTests"/>, so
/// here the other paths (serving's KV cache and batched steps, packed and recomputed training) are held to that one.
/// </summary>
public sealed class SlidingWindowTests
{
    private static readonly string ModelDir = Repo.File("tests/fixtures/models/mistral-sw-tiny");

    private static ModelConfig Parse(string json) => ModelConfig.Parse(JsonDocument.Parse(json).RootElement);

    private const string Mistral = """{"architectures":["MistralForCausalLM"],"vocab_size":8,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2""";

    [Fact]
    public void The_window_is_read_as_transformers_reads_it()
    {
        Assert.Equal(5, CausalLanguageModel.Load(ModelDir, CPU, ScalarType.Float32).Config.SlidingWindow);
        Assert.Equal(4096, Parse(Mistral + "}").SlidingWindow); // MistralConfig's default when the key is absent
        Assert.Null(Parse(Mistral + ""","sliding_window":null}""").SlidingWindow); // Mistral v0.2 and later
        Assert.Null(Parse(Mistral.Replace("MistralForCausalLM", "LlamaForCausalLM") + ""","sliding_window":16}""").SlidingWindow);
        Assert.Null(Parse(Mistral.Replace("MistralForCausalLM", "Qwen2ForCausalLM") + ""","use_sliding_window":false,"sliding_window":16}""").SlidingWindow);
        var refused = Assert.Throws<ModelLoadException>(() => Parse(Mistral.Replace("MistralForCausalLM", "Qwen2ForCausalLM") + ""","use_sliding_window":true}"""));
        Assert.Contains("use_sliding_window", refused.Message);
    }

    /// <summary>
    /// Batched generation (padded prompts prefilled together, then decode steps over the KV cache) far past the window
    /// gives the tokens that recomputing the whole sequence at every step gives; without the window in the masks the
    /// cached steps would attend to keys the model must not see.
    /// </summary>
    [Fact]
    public void Decoding_through_the_kv_cache_past_the_window_matches_recomputing_the_whole_sequence()
    {
        using var model = CausalLanguageModel.Load(ModelDir, CPU, ScalarType.Float32);
        int[][] prompts = [[5, 17, 99, 3, 42, 8, 200, 9, 61], [77, 4], [10, 11, 12, 13, 14, 15]];
        var generated = new TokenGenerator(model).Generate(prompts, prompts.Select(_ => SamplingParameters.Greedy(12)).ToList());

        using var _ = no_grad();
        for (var p = 0; p < prompts.Length; p++)
        {
            var tokens = prompts[p].ToList();
            for (var step = 0; step < 12; step++)
            {
                using var scope = NewDisposeScope();
                var ids = tensor(tokens.Select(t => (long)t).ToArray()).unsqueeze(0);
                var logits = model.Logits(model.Hidden(ids, arange(tokens.Count, ScalarType.Int64).unsqueeze(0)));
                tokens.Add((int)logits[0, -1].argmax().item<long>());
            }
            Assert.Equal(tokens.Skip(prompts[p].Length), generated[p].TokenIds);
        }

        // And the window matters here: the same weights with full attention generate something else.
        var config = Path.Combine(ModelDir, "config.json");
        using var dir = new TempDir();
        foreach (var file in Directory.GetFiles(ModelDir)) File.Copy(file, dir[Path.GetFileName(file)]);
        File.WriteAllText(dir["config.json"], File.ReadAllText(config).Replace("\"sliding_window\": 5", "\"sliding_window\": null", StringComparison.Ordinal));
        using var full = CausalLanguageModel.Load(dir.Path, CPU, ScalarType.Float32);
        Assert.Null(full.Config.SlidingWindow);
        var unwindowed = new TokenGenerator(full).Generate(prompts, prompts.Select(_ => SamplingParameters.Greedy(12)).ToList());
        Assert.Contains(Enumerable.Range(0, prompts.Length), p => !unwindowed[p].TokenIds.SequenceEqual(generated[p].TokenIds));
    }

    /// <summary>
    /// Training sees the window too: packed rows (attended sequence by sequence) and activation checkpointing (layers
    /// recomputed in backward) give the loss and LoRA gradients of the plain forward, whose logits match the reference.
    /// </summary>
    [Fact]
    public void Packed_and_recomputed_training_follow_the_window()
    {
        using var model = CausalLanguageModel.Load(ModelDir, CPU, ScalarType.Float32);
        var parameters = LoraModel.Attach(model, new LoraSettings(4, 8), ["all-linear"], seed: 2);
        using (no_grad()) foreach (var p in parameters.Where(p => p.dim() == 2 && p.size(1) == 4)) p.normal_(0, 0.3); // B ≠ 0
        var sequences = new[] { 14, 9, 11 }.Select((n, i) => new TrainingExample(
            Enumerable.Range(0, n).Select(t => (t * 37 + i * 11) % 256).ToArray(), Enumerable.Repeat(true, n).ToArray(), i + 1, false)).ToList();

        (double Loss, Tensor[] Gradients) Run(List<BatchRow> rows, bool checkpointing)
        {
            foreach (var p in parameters) p.grad = null;
            using var batch = Batching.Collate(rows, CPU);
            var loss = TrainingLoss.Backward(model, batch, 1.0, checkpointing).LossSum;
            return (loss, parameters.Select(p => p.grad!.clone()).ToArray());
        }

        var (plain, plainGradients) = Run(Batching.Single(sequences), checkpointing: false);
        foreach (var (loss, gradients, what) in new[]
        {
            (Run(Batching.Pack(sequences, 40), false), "packed"),
            (Run(Batching.Single(sequences), true), "recomputed"),
        }.Select(r => (r.Item1.Loss, r.Item1.Gradients, r.Item2)))
        {
            Assert.Equal(plain, loss, 3);
            for (var i = 0; i < gradients.Length; i++)
                Assert.True(gradients[i].allclose(plainGradients[i], rtol: 1e-4, atol: 1e-6), $"{what}: gradient {i} differs by {(gradients[i] - plainGradients[i]).abs().max().item<float>():g3}");
        }
    }
}
