using System.Text.Json;
using Gpud.Engine.Generation;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Engine.Templates;
using Gpud.Engine.Tokenization;
using Gpud.Engine.Training;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class LoraTrainerTests
{
    private static (TextTokenizer Tokenizer, ChatFormatter Chat, List<TrainingExample> Data) Dataset() =>
        Capitals.Encode(Repo.File("tests/fixtures/models/gpud-tiny"));

    [Fact]
    public void Twenty_questions_with_fixed_answers_are_learned_and_answered_where_the_base_model_cannot()
    {
        var (tokenizer, chat, data) = Dataset();
        using var model = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/gpud-tiny"), CPU, ScalarType.Float32);
        var before = Capitals.Ask(model, tokenizer, chat);
        Assert.All(before.Zip(Capitals.Answers), p => Assert.NotEqual(p.Second, p.First));

        var parameters = LoraModel.Attach(model, new LoraSettings(16, 32), ["all-linear"], seed: 1);
        var losses = new List<double>();
        new LoraTrainer(model, parameters, new TrainingOptions(Epochs: 60, BatchSize: 4, LearningRate: 5e-3, Seed: 1, WarmupRatio: 0.05))
            .Train(data, p => losses.Add(p.TrainLoss));

        Assert.True(losses[^1] < 0.1 * losses[0], $"loss went from {losses[0]:F3} to {losses[^1]:F3}");
        Assert.Equal(Capitals.Answers, Capitals.Ask(model, tokenizer, chat));
    }

    [Fact]
    public void The_same_seed_and_data_give_the_same_loss_curve_bit_for_bit()
    {
        var (_, _, data) = Dataset();
        List<double> Run()
        {
            using var model = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/gpud-tiny"), CPU, ScalarType.Float32);
            var parameters = LoraModel.Attach(model, new LoraSettings(8, 16, Dropout: 0.1), ["q_proj", "v_proj"], seed: 7);
            var losses = new List<double>();
            new LoraTrainer(model, parameters, new TrainingOptions(Epochs: 2, BatchSize: 4, LearningRate: 1e-3, Seed: 7, Schedule: LearningRateSchedule.Cosine))
                .Train(data, p => losses.Add(p.TrainLoss));
            return losses;
        }

        Assert.Equal(Run(), Run());
    }

    /// <summary>
    /// In float32 with DoRA (each projection its own forward), and in bf16 with LoRA on all linear projections (fused
    /// base matmuls, the optimizer's bf16 copies of the adapter, which a resume must refresh from the restored weights).
    /// </summary>
    [Theory]
    [InlineData(ScalarType.Float32, true)]
    [InlineData(ScalarType.BFloat16, false)]
    public void Resuming_from_a_checkpoint_continues_the_same_trajectory_bit_for_bit(ScalarType dtype, bool dora)
    {
        var (_, _, data) = Dataset();
        using var dir = new TempDir();
        var settings = new LoraSettings(8, 16, Dropout: 0.1, UseDora: dora);
        var options = new TrainingOptions(Epochs: 3, BatchSize: 6, LearningRate: 3e-3, Seed: 11, WarmupRatio: 0.1);

        List<double> Run(Func<int, bool, string?>? checkpointTo, string? resumeFrom, int? stopAfter)
        {
            using var model = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/gpud-tiny"), CPU, dtype);
            var parameters = LoraModel.Attach(model, settings, ["all-linear"], seed: 11);
            var losses = new List<double>();
            using var stop = new CancellationTokenSource();
            try
            {
                new LoraTrainer(model, parameters, options).Train(data, p =>
                    {
                        losses.Add(p.TrainLoss);
                        if (p.Step == stopAfter) stop.Cancel(); // honoured before the next micro-batch
                    },
                    checkpointTo, dir => PeftAdapter.Save(dir, model, settings, ["all-linear"], "gpud-tiny"), resumeFrom, cancellationToken: stop.Token);
            }
            catch (OperationCanceledException)
            {
            }
            return losses;
        }

        var uninterrupted = Run(null, null, null);
        var firstPart = Run((step, endOfEpoch) => step == 5 ? dir["ckpt-step-5"] : null, null, stopAfter: 5);
        var secondPart = Run(null, dir["ckpt-step-5"], null);

        Assert.Equal(12, uninterrupted.Count); // 3 epochs x ceil(20 / 6)
        Assert.Equal(uninterrupted, firstPart.Concat(secondPart));
        Assert.True(uninterrupted[^1] < 0.8 * uninterrupted[0], $"loss went from {uninterrupted[0]:F3} to {uninterrupted[^1]:F3}");
        Assert.True(File.Exists(dir["ckpt-step-5/adapter_model.safetensors"]));
        Assert.True(File.Exists(dir["ckpt-step-5/adapter_config.json"]));
    }

    [Fact]
    public void Validation_is_sampled_every_n_steps_and_run_in_full_at_each_epoch_end()
    {
        var (_, _, data) = Dataset();
        using var model = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/gpud-tiny"), CPU, ScalarType.Float32);
        var parameters = LoraModel.Attach(model, new LoraSettings(8, 16), ["all-linear"], seed: 2);
        var trainer = new LoraTrainer(model, parameters, new TrainingOptions(Epochs: 3, BatchSize: 4, LearningRate: 5e-3, Seed: 2, EvalEverySteps: 2, EvalSampleSequences: 8));
        var steps = new List<TrainingProgress>();

        trainer.Train(data, steps.Add, validation: data);

        Assert.Equal(15, steps.Count); // 3 epochs x 20 / 4
        Assert.All(steps, p => Assert.Equal(p.Step % 2 == 0, p.ValidLoss is not null));
        Assert.All(steps, p => Assert.Equal(p.Step % 5 == 0, p.FullValidLoss is not null)); // epoch ends
        Assert.True(steps[^1].FullValidLoss < steps[4].FullValidLoss);
        var (loss, accuracy) = trainer.Evaluate(data); // same weights as at the last step
        Assert.Equal(loss, steps[^1].FullValidLoss!.Value, 6);
        Assert.Equal(accuracy, steps[^1].FullValidMeanTokenAccuracy!.Value, 6);
        Assert.InRange(accuracy, 0, 1);
    }

    [Fact]
    public void Chunked_logits_and_activation_checkpointing_give_the_gradients_of_the_plain_backward_dropout_included()
    {
        var (_, _, data) = Dataset();
        using var model = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/gpud-tiny"), CPU, ScalarType.Float32);
        var parameters = LoraModel.Attach(model, new LoraSettings(8, 16, Dropout: 0.2, UseDora: true), ["all-linear"], seed: 3);
        using (no_grad())
        using (var perturbation = new Generator(11, CPU)) // its own generator: libtorch's global one is shared with parallel tests
        {
            foreach (var p in parameters) p.add_(randn(p.shape, generator: perturbation) * 0.05); // B starts at zero: make every gradient path non-trivial
        }
        using var batch = Batching.Collate(Batching.Pack(data.Take(8).ToList(), 512), CPU);
        model.train();

        (double Loss, long Correct, List<Tensor> Grads) Gradients(bool checkpointing, long chunkBytes)
        {
            using var dropout = new Generator(5, CPU);
            foreach (var (_, _, layer) in LoraModel.Projections(model)) layer.Adapter!.DropoutGenerator = dropout;
            foreach (var p in parameters) p.grad?.zero_();
            var result = TrainingLoss.Backward(model, batch, 1.0 / batch.TrainedTokens, checkpointing, dropout, chunkBytes);
            var grads = parameters.Select(p => p.grad!.clone()).ToList();
            // The generator ends where one plain forward leaves it, so later steps draw the same masks either way.
            Assert.Equal(rand(1, generator: dropout).item<float>(), ExpectedNextDraw());
            return (result.LossSum, result.Correct, grads);
        }

        float ExpectedNextDraw()
        {
            using var replay = new Generator(5, CPU);
            foreach (var (_, _, layer) in LoraModel.Projections(model)) layer.Adapter!.DropoutGenerator = replay;
            using (no_grad()) model.Hidden(batch.InputIds, batch.PositionIds, segments: batch.Segments);
            return rand(1, generator: replay).item<float>();
        }

        var vocabRow = model.Config.VocabSize * 4L;
        var plain = Gradients(false, TrainingLoss.DefaultLogitChunkBytes);
        var chunked = Gradients(false, 3 * vocabRow); // 3 trained positions per chunk
        var checkpointed = Gradients(true, 5 * vocabRow);

        Assert.True(batch.TrainedTokens > 10);
        foreach (var other in new[] { chunked, checkpointed })
        {
            Assert.Equal(plain.Loss, other.Loss, 3);
            Assert.Equal(plain.Correct, other.Correct);
            for (var i = 0; i < parameters.Count; i++)
            {
                Assert.True(plain.Grads[i].abs().max().item<float>() > 0, $"parameter {i} got no gradient");
                Assert.True(plain.Grads[i].allclose(other.Grads[i], rtol: 1e-4, atol: 1e-6), $"parameter {i} differs");
            }
        }
    }

    [Fact]
    public void Training_with_activation_checkpointing_and_chunked_logits_follows_the_plain_loss_curve()
    {
        var (_, _, data) = Dataset();
        List<double> Run(bool checkpointing, long chunkBytes)
        {
            using var model = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/gpud-tiny"), CPU, ScalarType.Float32);
            var parameters = LoraModel.Attach(model, new LoraSettings(8, 16, Dropout: 0.1), ["all-linear"], seed: 4);
            var losses = new List<double>();
            new LoraTrainer(model, parameters, new TrainingOptions(Epochs: 2, BatchSize: 5, LearningRate: 3e-3, Seed: 4,
                    ActivationCheckpointing: checkpointing, LogitChunkBytes: chunkBytes))
                .Train(data, p => losses.Add(p.TrainLoss));
            return losses;
        }

        var plain = Run(false, TrainingLoss.DefaultLogitChunkBytes);
        var saving = Run(true, 7 * 4L * 264); // 7 trained positions per logits chunk
        Assert.Equal(8, plain.Count);
        Assert.All(plain.Zip(saving), p => Assert.Equal(p.First, p.Second, 4));
        Assert.True(plain[^1] < plain[0]);
    }

    [Theory]
    // transformers' schedule lambdas evaluated at the steps already taken, except that warm-up starts at 1/W rather
    // than at a wasted zero-rate first step.
    [InlineData(LearningRateSchedule.Linear, new[] { 0.5, 1.0, 1.0, 0.75, 0.5, 0.25 })]
    [InlineData(LearningRateSchedule.Constant, new[] { 0.5, 1.0, 1.0, 1.0, 1.0, 1.0 })]
    [InlineData(LearningRateSchedule.Cosine, new[] { 0.5, 1.0, 1.0, 0.853553, 0.5, 0.146447 })]
    public void Schedules_warm_up_then_follow_transformers(LearningRateSchedule schedule, double[] expected)
    {
        var options = new TrainingOptions(1, 1, 1.0, 0, schedule, WarmupRatio: 2 / 6.0);
        var rates = Enumerable.Range(1, 6).Select(step => Math.Round(LoraTrainer.ScheduledRate(options, step, 6), 6));
        Assert.Equal(expected, rates);
    }
}
