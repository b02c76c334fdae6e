using System.Text.Json.Nodes;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Engine.Weights;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class PeftAdapterTests
{
    private static CausalLanguageModel Load(string name = "llama3-tiny") => CausalLanguageModel.Load(Repo.File($"tests/fixtures/models/{name}"), CPU, ScalarType.Float32);

    [Theory]
    [InlineData(false, false, LoraInit.Gaussian)]
    [InlineData(true, true, LoraInit.Gaussian)]
    [InlineData(false, false, LoraInit.Pissa)]
    [InlineData(true, true, LoraInit.Pissa)]
    public void A_saved_adapter_reloads_onto_the_original_base_with_the_same_logits(bool rslora, bool dora, LoraInit init)
    {
        using var dir = new TempDir();
        using var trained = Load();
        var settings = new LoraSettings(4, 8, UseRslora: rslora, UseDora: dora, Init: init);
        LoraModel.Attach(trained, settings, ["q_proj", "v_proj", "gate_proj"], seed: 5);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        foreach (var (_, _, layer) in LoraModel.Projections(trained).Where(p => p.Layer.Adapter is not null))
        {
            layer.Adapter!.A.add_(randn(layer.Adapter.A.shape) * 0.05); // as if trained
            layer.Adapter.B.add_(randn(layer.Adapter.B.shape) * 0.05);
            layer.Adapter.Magnitude?.mul_(1.1);
        }

        PeftAdapter.Save(dir["adapter"], trained, settings, ["q_proj", "v_proj", "gate_proj"], "llama3-tiny");
        using var reloaded = Load(); // the original weights: no PiSSA residual
        var loaded = PeftAdapter.Load(dir["adapter"], reloaded);

        var ids = tensor(new long[] { 5, 17, 99, 3, 42, 8, 200 }).unsqueeze(0);
        var positions = arange(7, ScalarType.Int64).unsqueeze(0);
        var expected = trained.Logits(trained.Hidden(ids, positions));
        var actual = reloaded.Logits(reloaded.Hidden(ids, positions));
        Assert.True(actual.allclose(expected, rtol: 1e-4, atol: 1e-4), $"max |diff| {(actual - expected).abs().max().item<float>():g3}");
        Assert.Equal(init == LoraInit.Pissa ? 8 : 4, loaded.Rank);
        Assert.Equal(settings.Scale, loaded.Scale, 9);
    }

    [Fact]
    public void The_files_use_peft_names_and_config_fields()
    {
        using var dir = new TempDir();
        using var model = Load();
        var settings = new LoraSettings(4, 8, Dropout: 0.05, UseDora: true);
        LoraModel.Attach(model, settings, ["all-linear"], seed: 1);

        PeftAdapter.Save(dir["a"], model, settings, ["all-linear"], "my-base");

        using var weights = new SafetensorsFile(dir["a/adapter_model.safetensors"]);
        Assert.Contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", weights.Names);
        Assert.Contains("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight", weights.Names);
        Assert.Contains("base_model.model.model.layers.0.self_attn.o_proj.lora_magnitude_vector", weights.Names);
        Assert.Equal(2 * 7 * 3, weights.Names.Count);
        var config = JsonNode.Parse(File.ReadAllText(dir["a/adapter_config.json"]))!;
        Assert.Equal(("LORA", "CAUSAL_LM", "my-base", 4, 8.0, true, false),
            ((string?)config["peft_type"], (string?)config["task_type"], (string?)config["base_model_name_or_path"], (int)config["r"]!,
             (double)config["lora_alpha"]!, (bool)config["use_dora"]!, (bool)config["use_rslora"]!));
        Assert.Equal(LoraSettings.AllLinear, config["target_modules"]!.AsArray().Select(t => (string)t!));
        Assert.Empty(Directory.EnumerateDirectories(dir.Path, "*.tmp"));
    }

    [Fact]
    public void An_adapter_for_another_base_is_refused_with_the_reason()
    {
        using var dir = new TempDir();
        using var model = Load("llama3-tiny");
        var settings = new LoraSettings(4, 8);
        LoraModel.Attach(model, settings, ["q_proj"], seed: 1);
        PeftAdapter.Save(dir["a"], model, settings, ["q_proj"], "llama3-tiny");

        using var other = Load("mistral-tiny"); // different q_proj shape (head_dim 24)
        var e = Assert.Throws<ModelLoadException>(() => PeftAdapter.Load(dir["a"], other));
        Assert.Contains("the base model needs", e.Message);
    }
}
