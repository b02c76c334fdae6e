using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class LoraTests
{
    private static CausalLanguageModel Load(string name = "qwen2-tiny") => CausalLanguageModel.Load(Repo.File($"tests/fixtures/models/{name}"), CPU, ScalarType.Float32);

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)]
    [InlineData(true, true)]
    public void Lora_rslora_and_dora_equal_the_layer_with_their_merged_weight(bool rslora, bool dora)
    {
        using var model = Load(); // qwen2-tiny: its q/k/v projections have biases
        LoraModel.Attach(model, new LoraSettings(4, 8, UseRslora: rslora, UseDora: dora), ["all-linear"], seed: 1);
        model.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var x = randn([2, 5, model.Config.HiddenSize], generator: new Generator(7, CPU));

        foreach (var (path, _, layer) in LoraModel.Projections(model))
        {
            var adapter = layer.Adapter!;
            adapter.B.copy_(randn(adapter.B.shape) * 0.1); // a trained adapter, not the zero B of initialisation
            if (dora) adapter.Magnitude!.mul_(1.5);
            var input = randn([2, 5, layer.InFeatures]);

            var expected = nn.functional.linear(input, adapter.MergedWeight(layer), layer.Bias);
            var actual = layer.forward(input);

            Assert.True(actual.allclose(expected, rtol: 1e-4, atol: 1e-5), $"{path}: max |diff| {(actual - expected).abs().max().item<float>():g3}");
        }
        Assert.Equal(rslora ? 8 / 2.0 : 8 / 4.0, LoraModel.Projections(model).First().Layer.Adapter!.Settings.Scale);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Pissa_at_step_zero_gives_the_base_models_output(bool dora)
    {
        using var baseModel = Load("llama3-tiny");
        using var adapted = Load("llama3-tiny");
        LoraModel.Attach(adapted, new LoraSettings(4, 16, UseDora: dora, Init: LoraInit.Pissa), ["q_proj", "v_proj", "down_proj"], seed: 1);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = tensor(new long[] { 5, 17, 99, 3, 42, 8, 200 }).unsqueeze(0);
        var positions = arange(7, ScalarType.Int64).unsqueeze(0);

        var expected = baseModel.Logits(baseModel.Hidden(ids, positions));
        var actual = adapted.Logits(adapted.Hidden(ids, positions));

        Assert.True(actual.allclose(expected, rtol: 1e-4, atol: 1e-4), $"max |diff| {(actual - expected).abs().max().item<float>():g3}");
        var q = LoraModel.Projections(adapted).First(p => p.Name == "q_proj").Layer;
        Assert.True(q.Adapter!.B.abs().sum().item<float>() > 0); // PiSSA starts from the principal components, not from zero
        var original = LoraModel.Projections(baseModel).First(p => p.Name == "q_proj").Layer.Weight;
        Assert.False(q.Weight.allclose(original)); // the base now holds the residual
    }

    [Fact]
    public void Gaussian_init_starts_as_the_base_model_and_only_adapter_weights_train()
    {
        using var baseModel = Load();
        using var adapted = Load();
        var trainable = LoraModel.Attach(adapted, new LoraSettings(8, 16, Dropout: 0.1, UseDora: true), ["all-linear"], seed: 3);
        adapted.eval();
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = tensor(new long[] { 1, 2, 3, 4 }).unsqueeze(0);
        var positions = arange(4, ScalarType.Int64).unsqueeze(0);

        Assert.True(adapted.Logits(adapted.Hidden(ids, positions)).allclose(baseModel.Logits(baseModel.Hidden(ids, positions)), rtol: 1e-5, atol: 1e-5));

        var config = adapted.Config;
        var expectedCount = config.NumLayers * LoraModel.Projections(adapted).Where(p => p.Path.StartsWith("model.layers.0.", StringComparison.Ordinal))
            .Sum(p => 8 * (p.Layer.InFeatures + p.Layer.OutFeatures) + p.Layer.OutFeatures);
        Assert.Equal(expectedCount, trainable.Sum(p => p.numel()));
        Assert.All(trainable, p => Assert.True(p.requires_grad));
        Assert.Equal(trainable.Count, adapted.parameters().Count(p => p.requires_grad));
        Assert.Contains(adapted.named_parameters(), p => p.name == "model.layers.0.self_attn.q_proj.lora.lora_A");
    }

    [Fact]
    public void Dropout_acts_only_in_training_mode()
    {
        using var model = Load();
        LoraModel.Attach(model, new LoraSettings(4, 8, Dropout: 0.5), ["q_proj"], seed: 1);
        var layer = LoraModel.Projections(model).First().Layer;
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        layer.Adapter!.B.copy_(ones_like(layer.Adapter.B));
        var x = ones([1, 3, layer.InFeatures]);

        model.eval();
        Assert.True(layer.forward(x).allclose(layer.forward(x)));
        model.train();
        Assert.False(layer.forward(x).allclose(layer.forward(x)));
    }

    [Fact]
    public void Dropout_draws_are_uniform_uncorrelated_and_replayed_from_the_same_seed()
    {
        using var scope = NewDisposeScope();
        using var first = new Generator(5);
        using var same = new Generator(5);
        var u = CounterRandom.Uniform([1000, 1000], CPU, first);

        Assert.True(u.allclose(CounterRandom.Uniform([1000, 1000], CPU, same), 0, 0), "the same seed gave other numbers");
        Assert.False(u.allclose(CounterRandom.Uniform([1000, 1000], CPU, first), 0, 0), "the next draw repeated the last");
        Assert.True(u.min().item<float>() >= 0 && u.max().item<float>() < 1);
        Assert.InRange(u.mean().item<float>(), 0.498, 0.502);
        Assert.InRange((u < 0.1).to_type(ScalarType.Float32).mean().item<float>(), 0.098, 0.102);
        // Neighbouring elements (a row's next feature, the next row) are independent: their correlation is ~0.
        var flat = u.flatten() - 0.5;
        var adjacent = (flat[..^1] * flat[1..]).mean().item<float>() / (1f / 12);
        var nextRow = (u[..^1] - 0.5).mul(u[1..] - 0.5).mean().item<float>() / (1f / 12);
        Assert.InRange(adjacent, -0.01, 0.01);
        Assert.InRange(nextRow, -0.01, 0.01);
    }
    /// <summary>
    /// In training, q/k/v with LoRA on every member run one base matmul and add the members' deltas side by side. The
    /// output and every gradient (A, B, the input's) must be those of each projection's own adapter forward: without
    /// dropout through one matmul by the stacked A matrices, with it member by member (drawing in the same order).
    /// </summary>
    [Theory]
    [InlineData(0.0)]
    [InlineData(0.2)]
    public void A_fused_projection_group_trains_as_its_members_would_one_by_one(double dropout)
    {
        using var model = Load(); // qwen2-tiny: q/k/v biases
        var parameters = LoraModel.Attach(model, new LoraSettings(4, 8, Dropout: dropout), ["all-linear"], seed: 5);
        model.train();
        var qkv = model.Body.Layers[0].SelfAttn.Qkv;
        using var scope = NewDisposeScope();
        using (no_grad()) foreach (var member in qkv.Members) member.Adapter!.B.normal_(0, 0.5); // B starts at zero
        using var inputs = new Generator(9, CPU);
        var x = randn([2, 5, qkv.Members[0].InFeatures], generator: inputs);

        (Tensor Output, Tensor[] Gradients) Run(Func<Tensor, Tensor> forward)
        {
            using var dropout = new Generator(3);
            foreach (var member in qkv.Members) member.Adapter!.DropoutGenerator = dropout;
            foreach (var p in parameters) p.grad = null;
            var input = x.detach().requires_grad_(true);
            var output = forward(input);
            output.pow(2).sum().backward();
            var gradients = qkv.Members.SelectMany(m => new[] { m.Adapter!.A.grad!.clone(), m.Adapter.B.grad!.clone() }).Append(input.grad!.clone()).ToArray();
            return (output.detach(), gradients);
        }

        var (fused, fusedGradients) = Run(input => qkv.Project(input, null));
        var (separate, separateGradients) = Run(input => cat(qkv.Members.Select(m => m.forward(input)).ToList(), -1));

        Assert.True(fused.allclose(separate, rtol: 1e-5, atol: 1e-5), $"outputs differ by {(fused - separate).abs().max().item<float>():g3}");
        for (var i = 0; i < fusedGradients.Length; i++)
        {
            Assert.True(fusedGradients[i].abs().max().item<float>() > 0, $"gradient {i} is zero");
            // Float rounding of sums taken in another order, relative to the gradient's scale (these reach ~10³).
            var (difference, largest) = ((fusedGradients[i] - separateGradients[i]).abs().max().item<float>(), separateGradients[i].abs().max().item<float>());
            Assert.True(difference <= 1e-5 * largest, $"gradient {i} differs by {difference:g3} (largest {largest:g3})");
        }
    }
}
