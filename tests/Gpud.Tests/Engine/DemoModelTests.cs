using System.Security.Cryptography;
using Gpud.Engine.Demo;
using Gpud.Engine.Generation;
using Gpud.Engine.Models;
using Gpud.Engine.Tokenization;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class DemoModelTests
{
    [Fact]
    public void Gpud_tiny_is_created_identically_every_time_in_hugging_face_format()
    {
        using var a = new TempDir();
        using var b = new TempDir();
        DemoModel.EnsureCreated(a["gpud-tiny"]);
        DemoModel.EnsureCreated(b["gpud-tiny"]);

        var files = Directory.EnumerateFiles(a["gpud-tiny"]).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.Equal([".gpud-demo-version", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"], files);
        foreach (var file in files)
            Assert.Equal(Hash(Path.Combine(a["gpud-tiny"], file!)), Hash(Path.Combine(b["gpud-tiny"], file!)));
        Assert.Empty(Directory.EnumerateDirectories(a.Path, ".*")); // no temporary directory left behind
    }

    [Fact]
    public void A_fresh_gpud_tiny_equals_the_committed_copy_the_reference_logits_were_computed_from()
    {
        using var dir = new TempDir();
        var fresh = DemoModel.EnsureCreated(dir["gpud-tiny"]);
        var committed = Repo.File("tests/fixtures/models/gpud-tiny");
        foreach (var file in Directory.EnumerateFiles(committed))
            Assert.True(Hash(file) == Hash(Path.Combine(fresh, Path.GetFileName(file))),
                $"{Path.GetFileName(file)} differs: regenerate tests/fixtures/models/gpud-tiny and its logits (scripts/fixtures)");
    }

    [Fact]
    public void Gpud_tiny_loads_tokenizes_and_generates_reproducibly()
    {
        using var dir = new TempDir();
        var path = DemoModel.EnsureCreated(dir["gpud-tiny"]);
        var tokenizer = TextTokenizer.Load(path);
        using var model = CausalLanguageModel.Load(path, CPU, ScalarType.Float32);

        var prompt = tokenizer.Encode("Hello, gpud! ✓", addSpecialTokens: true);
        Assert.Equal(tokenizer.BosTokenId, prompt[0]);
        Assert.Equal("Hello, gpud! ✓", tokenizer.Decode(prompt));
        Assert.Equal(DemoModel.VocabSize, model.Config.VocabSize);
        Assert.Equal([257, 260], model.Config.EosTokenIds);

        var generator = new TokenGenerator(model);
        var sampling = new SamplingParameters(64, Temperature: 0.9, Seed: 42);
        var first = generator.Generate([prompt], [sampling])[0];
        var second = generator.Generate([prompt], [sampling])[0];
        Assert.Equal(first.TokenIds, second.TokenIds);
        Assert.NotEmpty(first.TokenIds);
    }

    [Fact]
    public void Seeded_sampling_gives_the_recorded_tokens_in_every_process()
    {
        // Recorded from a separate process; equality here shows a seed fixes the output across runs and restarts.
        var path = Repo.File("tests/fixtures/models/gpud-tiny");
        var tokenizer = TextTokenizer.Load(path);
        using var model = CausalLanguageModel.Load(path, CPU, ScalarType.Float32);
        var prompt = tokenizer.Encode("Hello, gpud! ✓", addSpecialTokens: true);

        var sampled = new TokenGenerator(model).Generate([prompt], [new SamplingParameters(16, Temperature: 0.9, TopP: 0.95, Seed: 42)])[0];

        Assert.Equal([133, 201, 169, 189, 178, 221, 52, 114, 122, 53, 187, 198, 69, 18, 210, 182], sampled.TokenIds);
    }

    [Fact]
    public void An_interrupted_creation_is_redone()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir["gpud-tiny"]);
        File.WriteAllText(dir["gpud-tiny/config.json"], "{ half written");

        DemoModel.EnsureCreated(dir["gpud-tiny"]);

        Assert.Equal(DemoModel.VocabSize, ModelConfig.Load(dir["gpud-tiny"]).VocabSize);
    }

    private static string Hash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));
}
