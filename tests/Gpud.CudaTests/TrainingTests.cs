using System.Text.Json;
using Gpud.Engine.Generation;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Engine.Templates;
using Gpud.Engine.Tokenization;
using Gpud.Engine.Training;
using Gpud.Tests.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace Gpud.CudaTests;

/// <summary>
/// LoRA training steps on CUDA (supervised and DPO): the CPU's loss curve in float32 (dropout included), learning with a
/// bf16 frozen base, and resuming from a checkpoint.
/// </summary>
public sealed class TrainingTests
{
    private static readonly string ModelDir = Gpu.Fixture("models/gpud-tiny");

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.1)] // the dropout masks too: drawn on each device from the same seed, they are the same masks
    public void Float32_training_on_cuda_follows_the_cpu_loss_curve(double dropout)
    {
        var device = Gpu.Require();
        var (_, _, data) = Dataset();
        var options = new TrainingOptions(Epochs: 3, BatchSize: 4, LearningRate: 5e-3, Seed: 1);
        var cpu = Losses(CPU, ScalarType.Float32, data, options, dropout);
        var gpu = Losses(device, ScalarType.Float32, data, options, dropout);
        Assert.Equal(cpu.Count, gpu.Count);
        for (var i = 0; i < cpu.Count; i++)
            Assert.True(Math.Abs(cpu[i] - gpu[i]) <= 2e-3 * Math.Abs(cpu[i]) + 1e-4, $"step {i + 1}: cpu {cpu[i]:F6}, cuda {gpu[i]:F6}");
    }

    [Fact]
    public void With_a_bf16_base_the_adapter_trains_in_float32_and_learns_the_answers()
    {
        var device = Gpu.Require();
        var (tokenizer, chat, data) = Dataset();
        using var model = CausalLanguageModel.Load(ModelDir, device, ScalarType.BFloat16);
        var baseChecksum = Checksum(model);
        var parameters = LoraModel.Attach(model, new LoraSettings(16, 32), ["all-linear"], seed: 1);
        Assert.All(parameters, p => Assert.Equal(ScalarType.Float32, p.dtype));
        Assert.All(parameters, p => Assert.Equal(device.type, p.device_type));

        var losses = new List<double>();
        new LoraTrainer(model, parameters, new TrainingOptions(Epochs: 60, BatchSize: 4, LearningRate: 5e-3, Seed: 1, WarmupRatio: 0.05))
            .Train(data, p => losses.Add(p.TrainLoss), cancellationToken: TestContext.Current.CancellationToken);

        Assert.True(losses[^1] < 0.1 * losses[0], $"loss went from {losses[0]:F3} to {losses[^1]:F3}");
        Assert.Equal(baseChecksum, Checksum(model)); // the frozen base stayed frozen
        var answers = Capitals.Ask(model, tokenizer, chat, TestContext.Current.CancellationToken);
        var right = answers.Zip(Capitals.Answers).Count(p => p.First == p.Second);
        Assert.True(right >= 19, $"{right}/20 answers reproduced: {string.Join(", ", answers)}");
    }

    [Fact]
    public void Dpo_on_cuda_follows_the_cpu_curve_in_float32_and_learns_the_preferences_over_a_bf16_base()
    {
        var device = Gpu.Require();
        var pairs = Capitals.EncodePreferences(ModelDir);
        var options = new TrainingOptions(Epochs: 3, BatchSize: 4, LearningRate: 5e-3, Seed: 1);
        List<TrainingProgress> Run(Device on, ScalarType dtype, TrainingOptions o)
        {
            using var model = CausalLanguageModel.Load(ModelDir, on, dtype);
            var parameters = LoraModel.Attach(model, new LoraSettings(16, 32), ["all-linear"], seed: 1);
            var sink = new RecordingTrainingSink();
            new LoraTrainer(model, parameters, o).TrainPreferences(pairs, sink, cancellationToken: TestContext.Current.CancellationToken);
            return sink.Steps;
        }

        var cpu = Run(CPU, ScalarType.Float32, options);
        var gpu = Run(device, ScalarType.Float32, options);
        for (var i = 0; i < cpu.Count; i++)
            Assert.True(Math.Abs(cpu[i].TrainLoss - gpu[i].TrainLoss) <= 2e-3 * Math.Abs(cpu[i].TrainLoss) + 1e-4, $"step {i + 1}: cpu {cpu[i].TrainLoss:F6}, cuda {gpu[i].TrainLoss:F6}");

        var bf16 = Run(device, ScalarType.BFloat16, options with { Epochs = 30 });
        Assert.Equal(Math.Log(2), bf16[0].TrainLoss, 2); // the reference is the starting model, up to bf16 batching differences
        Assert.True(bf16[^1].TrainLoss < 0.1, $"DPO loss ended at {bf16[^1].TrainLoss:F3}");
        Assert.Equal(1.0, bf16[^1].RewardAccuracy);
    }

    private static (TextTokenizer Tokenizer, ChatFormatter Chat, List<TrainingExample> Data) Dataset() => Capitals.Encode(ModelDir);

    [Fact]
    public void Resuming_on_cuda_from_a_checkpoint_continues_the_same_trajectory()
    {
        var device = Gpu.Require();
        var (_, _, data) = Dataset();
        var dir = Directory.CreateTempSubdirectory("gpud-cuda-resume-").FullName;
        try
        {
            var settings = new LoraSettings(8, 16, Dropout: 0.1, UseDora: true);
            var options = new TrainingOptions(Epochs: 3, BatchSize: 6, LearningRate: 3e-3, Seed: 11, WarmupRatio: 0.1);
            List<double> Run(Func<int, bool, string?>? checkpointTo, string? resumeFrom, int? stopAfter)
            {
                // float32, so that only what the checkpoint carries (adapter, optimizer moments, RNG, data position) can differ.
                using var model = CausalLanguageModel.Load(ModelDir, device, ScalarType.Float32);
                var parameters = LoraModel.Attach(model, settings, ["all-linear"], seed: 11);
                var sink = new RecordingTrainingSink(checkpointTo, d => PeftAdapter.Save(d, model, settings, ["all-linear"], "gpud-tiny"), stopAfter);
                new LoraTrainer(model, parameters, options).Train(data, sink, resumeFrom, cancellationToken: TestContext.Current.CancellationToken);
                return sink.Steps.Select(p => p.TrainLoss).ToList();
            }

            var checkpoint = Path.Combine(dir, "ckpt-step-5");
            var uninterrupted = Run(null, null, null);
            var resumed = Run((step, _) => step == 5 ? checkpoint : null, null, stopAfter: 5).Concat(Run(null, checkpoint, null)).ToList();

            Assert.Equal(12, uninterrupted.Count);
            Assert.Equal(uninterrupted.Count, resumed.Count);
            // CUDA's attention backward may add in another order run to run: equal up to that, not bit for bit.
            for (var i = 0; i < uninterrupted.Count; i++)
                Assert.True(Math.Abs(uninterrupted[i] - resumed[i]) <= 1e-4 * Math.Abs(uninterrupted[i]) + 1e-6, $"step {i + 1}: {uninterrupted[i]:F6} uninterrupted, {resumed[i]:F6} resumed");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void Dropout_draws_on_cuda_equal_the_cpu_ones()
    {
        var device = Gpu.Require();
        using var scope = NewDisposeScope();
        using var onCpu = new Generator(9);
        using var onCuda = new Generator(9);
        // 64-bit products must wrap on the GPU as on the CPU (SplitMix64 relies on it).
        var expected = CounterRandom.Uniform([2, 2048, 4096], CPU, onCpu);
        var actual = CounterRandom.Uniform([2, 2048, 4096], device, onCuda);
        Assert.Equal(device.type, actual.device_type);
        Assert.True(expected.equal(actual.cpu()).all().item<bool>(), "CounterRandom gave other numbers on CUDA");
    }

    private static List<double> Losses(Device device, ScalarType dtype, List<TrainingExample> data, TrainingOptions options, double dropout = 0)
    {
        using var model = CausalLanguageModel.Load(ModelDir, device, dtype);
        var parameters = LoraModel.Attach(model, new LoraSettings(16, 32, Dropout: dropout), ["all-linear"], seed: 1);
        var losses = new List<double>();
        new LoraTrainer(model, parameters, options).Train(data, p => losses.Add(p.TrainLoss), cancellationToken: TestContext.Current.CancellationToken);
        return losses;
    }

    private static double Checksum(CausalLanguageModel model)
    {
        using var _ = no_grad();
        return model.named_parameters().Where(p => !p.name.Contains("lora_", StringComparison.Ordinal))
            .Sum(p => p.parameter.to(ScalarType.Float64).abs().sum().item<double>());
    }
}
