using System.Text.Json;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Engine.Training;
using Gpud.Engine.Weights;
using static TorchSharp.torch;

namespace Gpud.CudaTests;

/// <summary>A batch too large for the device fails with gpud's out-of-memory error, and the device trains again after.</summary>
public sealed class OutOfMemoryTests
{
    [Fact]
    public void Out_of_memory_is_a_clear_error_and_the_device_trains_again_after_it()
    {
        var device = Gpu.Require();
        // Two layers of a 1B-class shape: 64 rows x 16,384 tokens need several 17 GB MLP activations at once.
        var config = Configs.Llama(hidden: 2048, layers: 2, heads: 32, kvHeads: 8, intermediate: 8192, vocab: 32000);
        using var weights = new RandomWeights(config, 1);
        using var model = CausalLanguageModel.Load(config, weights, device, ScalarType.BFloat16);
        var parameters = LoraModel.Attach(model, new LoraSettings(16, 32), ["all-linear"], seed: 1);

        var huge = Sequences(64, 16_384, config.VocabSize);
        var tooMuch = new TrainingOptions(1, 64, 1e-4, 1, Packing: false, MaxLength: 16_384, MaxTokensPerMicroBatch: 64 * 16_384);
        var error = Assert.Throws<OutOfDeviceMemoryException>(() => new LoraTrainer(model, parameters, tooMuch).Train(huge, cancellationToken: TestContext.Current.CancellationToken));
        Assert.Contains("batch_size", error.Message, StringComparison.Ordinal);

        var losses = new List<double>();
        new LoraTrainer(model, parameters, new TrainingOptions(1, 2, 1e-4, 1, MaxLength: 512))
            .Train(Sequences(4, 512, config.VocabSize), p => losses.Add(p.TrainLoss), cancellationToken: TestContext.Current.CancellationToken);
        Assert.Equal(2, losses.Count);
        Assert.All(losses, l => Assert.True(double.IsFinite(l) && l > 0, $"loss {l}"));
    }

    [Fact]
    public async Task A_job_that_runs_out_of_device_memory_fails_with_out_of_memory_and_the_next_job_trains()
    {
        Gpu.Require();
        // Llama 3.2 1B's layers (vocabulary cut to 32k) and one 120k-token example per micro-batch: its activations
        // (~12 GB a layer, 16 layers) exceed any single GPU, while the next job's short examples fit easily.
        var model = Directory.CreateTempSubdirectory("gpud-cuda-oom-").FullName;
        try
        {
            using (var make = System.Diagnostics.Process.Start(Daemon.Program("gpud-bench"),
                       ["make-model", "--out", model, "--layers", "16", "--vocab", "32000"])!)
            {
                await make.WaitForExitAsync(TestContext.Current.CancellationToken);
                Assert.Equal(0, make.ExitCode);
            }
            using var daemon = await Daemon.StartAsync(null, $"--Gpud:Models:big:Path={model}",
                "--Gpud:FineTuning:Training:MaxSequenceLength=131072");
            string Chat(string answer) => string.Concat(Enumerable.Range(0, 10).Select(i => JsonSerializer.Serialize(new
            {
                messages = new object[] { new { role = "user", content = $"Example {i}" }, new { role = "assistant", content = answer } },
            }) + "\n"));

            var huge = await daemon.UploadAsync(Chat(new string('x', 120_000)));
            var failing = await daemon.PostAsync("/v1/fine_tuning/jobs", new
            {
                model = "big", training_file = huge, method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = 1, batch_size = 1 } } },
            });
            var failed = await daemon.WaitForJobAsync(failing.GetProperty("id").GetString()!);
            Assert.Equal("failed", failed.GetProperty("status").GetString());
            var error = failed.GetProperty("error");
            Assert.Equal("out_of_memory", error.GetProperty("code").GetString());
            Assert.Contains("batch_size", error.GetProperty("message").GetString(), StringComparison.Ordinal);
            Assert.Contains("gradient_checkpointing", error.GetProperty("message").GetString(), StringComparison.Ordinal);

            var small = await daemon.UploadAsync(Chat("short"));
            var next = await daemon.PostAsync("/v1/fine_tuning/jobs", new
            {
                model = "big", training_file = small, method = new { type = "supervised", supervised = new { hyperparameters = new { n_epochs = 1, batch_size = 2 } } },
            });
            var succeeded = await daemon.WaitForJobAsync(next.GetProperty("id").GetString()!);
            Assert.True(succeeded.GetProperty("status").GetString() == "succeeded", $"the job after the out-of-memory one: {succeeded}\n{daemon.Log}");
        }
        finally
        {
            Directory.Delete(model, recursive: true);
        }
    }

    private static List<TrainingExample> Sequences(int count, int length, int vocab)
    {
        var random = new Random(3);
        return Enumerable.Range(0, count)
            .Select(i => new TrainingExample(Enumerable.Range(0, length).Select(_ => random.Next(vocab)).ToArray(), Enumerable.Repeat(true, length).ToArray(), i + 1, false))
            .ToList();
    }
}
