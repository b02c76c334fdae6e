using System.Text.Json;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Engine.Templates;
using Gpud.Engine.Tokenization;
using Gpud.Engine.Training;
using Gpud.Tests.Infrastructure;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class PreferenceTrainingTests
{
    private static readonly string TinyModel = Repo.File("tests/fixtures/models/gpud-tiny");

    /// <summary>Summed log-probability of a sequence's trained tokens, from one plain forward pass of it alone.</summary>
    private static Tensor PlainLogProb(CausalLanguageModel model, TrainingExample sequence)
    {
        var ids = tensor(sequence.InputIds.Select(i => (long)i).ToArray()).unsqueeze(0);
        var positions = arange(sequence.InputIds.Length, dtype: ScalarType.Int64).unsqueeze(0);
        var logProbs = nn.functional.log_softmax(model.Logits(model.Hidden(ids, positions)), -1)[0];
        var total = zeros(1);
        for (var t = 1; t < sequence.InputIds.Length; t++)
        {
            if (sequence.LossMask[t]) total = total + logProbs[t - 1, sequence.InputIds[t]];
        }
        return total;
    }

    private static List<Tensor> Gradients(IReadOnlyList<Parameter> parameters)
    {
        var gradients = parameters.Select(p => p.grad!.clone()).ToList();
        foreach (var p in parameters) p.grad!.zero_();
        return gradients;
    }

    [Fact]
    public void The_dpo_gradient_through_chunked_packed_logits_equals_autograd_of_the_loss_on_each_sequence_alone()
    {
        var pairs = Capitals.EncodePreferences(TinyModel).Take(6).ToList();
        using var model = CausalLanguageModel.Load(TinyModel, CPU, ScalarType.Float32);
        var parameters = LoraModel.Attach(model, new LoraSettings(8, 16, UseDora: true), ["all-linear"], seed: 5);
        using (no_grad())
        using (var perturbation = new TorchSharp.torch.Generator(5, CPU))
        {
            foreach (var p in parameters) p.add_(randn(p.shape, generator: perturbation) * 0.05); // a policy away from its reference
        }
        model.train();
        const double beta = 0.3;
        var reference = pairs.Select((_, i) => (Chosen: -20.0 - i, Rejected: -21.5 + 0.25 * i)).ToList();

        // Autograd of the DPO loss written out plainly: each sequence alone, full log-softmax, mean over pairs.
        var loss = zeros(1);
        var plainScores = new List<double>();
        for (var i = 0; i < pairs.Count; i++)
        {
            var chosen = PlainLogProb(model, pairs[i].Chosen);
            var rejected = PlainLogProb(model, pairs[i].Rejected);
            plainScores.Add(chosen.item<float>());
            plainScores.Add(rejected.item<float>());
            var z = beta * ((chosen - reference[i].Chosen) - (rejected - reference[i].Rejected));
            loss = loss - nn.functional.logsigmoid(z) / pairs.Count;
        }
        loss.backward();
        var expected = Gradients(parameters);

        // gpud: the pairs' sequences packed three to a row, logits in chunks of 3 rows, per-sequence weights.
        var sequences = pairs.SelectMany(p => new[] { p.Chosen, p.Rejected }).ToList();
        using var batch = Batching.Collate(Batching.Pack(sequences, 128), CPU);
        Assert.NotNull(batch.Segments); // rows really hold several sequences
        double gpudLoss = 0;
        var scores = PreferenceLoss.Backward(model, batch, sequences.Count, logProbs =>
        {
            var weights = new double[logProbs.Length];
            for (var i = 0; i < pairs.Count; i++)
            {
                var pair = PreferenceLoss.Pair(beta, logProbs[2 * i], logProbs[2 * i + 1], reference[i].Chosen, reference[i].Rejected);
                gpudLoss += pair.Loss / pairs.Count;
                weights[2 * i] = pair.ChosenGradient / pairs.Count;
                weights[2 * i + 1] = pair.RejectedGradient / pairs.Count;
            }
            return weights;
        }, logitChunkBytes: 3L * model.Config.VocabSize * 4);
        var actual = Gradients(parameters);

        Assert.Equal(loss.item<float>(), gpudLoss, 4);
        for (var s = 0; s < sequences.Count; s++) Assert.Equal(plainScores[s], scores.LogProbs[s], 3);
        Assert.Equal(sequences.Select(s => s.TrainedTokens), scores.Tokens);
        for (var i = 0; i < parameters.Count; i++)
        {
            var difference = (actual[i] - expected[i]).abs().max().item<float>();
            var scale = expected[i].abs().max().item<float>();
            Assert.True(scale > 0 && difference <= 1e-4 * Math.Max(scale, 1e-3), $"parameter {i}: max |Δgrad| {difference:G3} against max |grad| {scale:G3}");
        }
    }

    [Fact]
    public void Dpo_starts_at_ln2_and_teaches_the_model_to_prefer_the_preferred_answers()
    {
        var pairs = Capitals.EncodePreferences(TinyModel);
        using var model = CausalLanguageModel.Load(TinyModel, CPU, ScalarType.Float32);
        var parameters = LoraModel.Attach(model, new LoraSettings(16, 32), ["all-linear"], seed: 1);
        var trainer = new LoraTrainer(model, parameters, new TrainingOptions(Epochs: 30, BatchSize: 4, LearningRate: 5e-3, Seed: 1, Beta: 0.1));
        var before = Margins(model, pairs);
        var sink = new RecordingTrainingSink();

        trainer.TrainPreferences(pairs, sink);
        var steps = sink.Steps;

        // The reference is the starting model: the first step's loss is exactly −log σ(0).
        Assert.Equal(Math.Log(2), steps[0].TrainLoss, 6);
        Assert.Equal(0, steps[0].RewardMargin!.Value, 6);
        Assert.True(steps[^1].TrainLoss < 0.1, $"DPO loss ended at {steps[^1].TrainLoss:F3}");
        Assert.Equal(1.0, steps[^1].RewardAccuracy);
        var after = Margins(model, pairs);
        Assert.All(before.Zip(after), m => Assert.True(m.Second > m.First + 5, $"log π(preferred) − log π(rejected) went from {m.First:F2} to {m.Second:F2}"));
        Assert.All(after, m => Assert.True(m > 0));
    }

    private static List<double> Margins(CausalLanguageModel model, List<PreferencePair> pairs)
    {
        var wasTraining = model.training;
        model.eval();
        using var _ = no_grad();
        var sequences = pairs.SelectMany(p => new[] { p.Chosen, p.Rejected }).ToList();
        using var batch = Batching.Collate(Batching.Single(sequences), CPU);
        var scores = PreferenceLoss.Score(model, batch, sequences.Count);
        if (wasTraining) model.train();
        return pairs.Select((_, i) => scores.LogProbs[2 * i] - scores.LogProbs[2 * i + 1]).ToList();
    }

    [Fact]
    public void Resuming_dpo_from_a_checkpoint_keeps_the_starting_reference_and_the_same_trajectory_bit_for_bit()
    {
        var pairs = Capitals.EncodePreferences(TinyModel);
        using var dir = new TempDir();
        // PiSSA moves the base weights into the adapter: a reference rebuilt by disabling the adapter would be wrong.
        var settings = new LoraSettings(8, 16, Dropout: 0.1, Init: LoraInit.Pissa);
        var options = new TrainingOptions(Epochs: 2, BatchSize: 6, LearningRate: 3e-3, Seed: 4, Packing: false);

        List<(double Loss, double? Margin)> Run(Func<int, bool, string?>? checkpointTo, string? resumeFrom, int? stopAfter)
        {
            using var model = CausalLanguageModel.Load(TinyModel, CPU, ScalarType.Float32);
            var parameters = LoraModel.Attach(model, settings, ["all-linear"], seed: 4);
            var sink = new RecordingTrainingSink(checkpointTo, dir => PeftAdapter.Save(dir, model, settings, ["all-linear"], "gpud-tiny"), stopAfter);
            new LoraTrainer(model, parameters, options).TrainPreferences(pairs, sink, resumeFrom, validation: pairs.Take(5).ToList());
            return sink.Steps.Select(p => (p.TrainLoss, p.RewardMargin)).ToList();
        }

        var uninterrupted = Run(null, null, null);
        var firstPart = Run((step, _) => step == 3 ? dir["ckpt-step-3"] : null, null, stopAfter: 3);
        var secondPart = Run(null, dir["ckpt-step-3"], null);

        Assert.Equal(8, uninterrupted.Count); // 2 epochs x ceil(20 / 6)
        Assert.Equal(uninterrupted, firstPart.Concat(secondPart));
        Assert.True(File.Exists(dir["ckpt-step-3/adapter_model.safetensors"]));
    }

    [Fact]
    public void Splitting_a_step_into_micro_batches_accumulates_the_same_dpo_step()
    {
        var pairs = Capitals.EncodePreferences(TinyModel);
        List<double> Losses(int maxTokensPerMicroBatch)
        {
            using var model = CausalLanguageModel.Load(TinyModel, CPU, ScalarType.Float32);
            var parameters = LoraModel.Attach(model, new LoraSettings(8, 16), ["all-linear"], seed: 6);
            var sink = new RecordingTrainingSink();
            new LoraTrainer(model, parameters, new TrainingOptions(Epochs: 2, BatchSize: 8, LearningRate: 5e-3, Seed: 6, MaxTokensPerMicroBatch: maxTokensPerMicroBatch))
                .TrainPreferences(pairs, sink);
            return sink.Steps.Select(p => p.TrainLoss).ToList();
        }

        var whole = Losses(8192);
        var split = Losses(100); // one pair (two ~40-token answers) per micro-batch
        Assert.Equal(whole.Count, split.Count);
        for (var i = 0; i < whole.Count; i++) Assert.Equal(whole[i], split[i], 5);
        Assert.NotEqual(whole[0], whole[1], 3); // the steps really moved the adapter
    }

    [Fact]
    public void A_preference_example_trains_each_answer_after_the_same_rendered_prompt()
    {
        var tokenizer = TextTokenizer.Load(TinyModel);
        var chat = new ChatFormatter(tokenizer, ChatTemplate.Parse(tokenizer.ChatTemplate!));
        var encoder = new ExampleEncoder(tokenizer, chat, 256);
        using var line = JsonDocument.Parse(JsonSerializer.Serialize(Capitals.Preference(3)));

        var pair = encoder.EncodePreference(line.RootElement, 1);

        using var question = JsonDocument.Parse("""[{"role":"user","content":"Capital #3?"}]""");
        var prompt = chat.Format(question.RootElement, addGenerationPrompt: true).TokenIds;
        foreach (var (sequence, answer) in new[] { (pair.Chosen, "Berlin"), (pair.Rejected, Capitals.WrongAnswer(3)) })
        {
            Assert.Equal(prompt, sequence.InputIds.Take(prompt.Count));
            Assert.All(sequence.LossMask.Take(prompt.Count), m => Assert.False(m));
            Assert.All(sequence.LossMask.Skip(prompt.Count), m => Assert.True(m));
            Assert.StartsWith(answer, tokenizer.Decode(sequence.InputIds.Skip(prompt.Count)));
        }
        var supervised = Assert.Throws<TrainingDataException>(() => encoder.Encode(line.RootElement, 4));
        Assert.Contains("Line 4 is a preference example", supervised.Message);
        Assert.Contains("'dpo'", supervised.Message);
        using var chatLine = JsonDocument.Parse(JsonSerializer.Serialize(Capitals.Chat(1)));
        Assert.Contains("is not a preference example", Assert.Throws<TrainingDataException>(() => encoder.EncodePreference(chatLine.RootElement, 2)).Message);
    }
}
