using static TorchSharp.torch;

namespace Gpud.Engine.Training;

public sealed partial class LoraTrainer
{
    /// <summary>What one step did: its loss and accuracy, the tokens it trained on and the tokens it ran through the model.</summary>
    private readonly record struct StepResult(double Loss, double Accuracy, long TrainedTokens, long Tokens, double? RewardAccuracy = null, double? RewardMargin = null);

    private readonly record struct Evaluation(double Loss, double Accuracy);

    /// <summary>
    /// What the trainer's loop steps over: items (sequences or pairs) taken <see cref="TrainingOptions.BatchSize"/> at a
    /// time. Schedule, optimizer, checkpoints and resume are the loop's; the loss and what it needs are the objective's.
    /// </summary>
    private interface IObjective
    {
        int Count { get; }

        int ValidationCount { get; }

        /// <summary>Before the first step of a fresh run.</summary>
        void Prepare();

        /// <summary>Accumulates the gradient of the step's mean loss over <paramref name="items"/>.</summary>
        /// <param name="afterBackward">Called after each backward pass (the optimizer gathers the compute copies' gradients).</param>
        StepResult Step(IReadOnlyList<int> items, Generator dropout, Action afterBackward, CancellationToken cancellationToken);

        /// <summary>Loss and accuracy over validation items (called without gradients, in eval mode).</summary>
        Evaluation Evaluate(IReadOnlyList<int> items);

        /// <summary>Adds what a resume needs beyond the adapter and optimizer to a checkpoint being written.</summary>
        void Save(string directory);

        /// <summary>Reads back what <see cref="Save"/> wrote, instead of <see cref="Prepare"/>.</summary>
        void Load(string directory);
    }

    /// <summary>Next-token loss on the assistant tokens; a step's loss is the mean over its trained tokens.</summary>
    private sealed class SupervisedObjective(LoraTrainer trainer, IReadOnlyList<TrainingExample> sequences, IReadOnlyList<TrainingExample> validation) : IObjective
    {
        public int Count => sequences.Count;

        public int ValidationCount => validation.Count;

        public void Prepare()
        {
        }

        public StepResult Step(IReadOnlyList<int> items, Generator dropout, Action afterBackward, CancellationToken cancellationToken)
        {
            var options = trainer.Options;
            var stepSequences = items.Select(i => sequences[i]).ToList();
            var rows = options.Packing ? Batching.Pack(stepSequences, options.MaxLength) : Batching.Single(stepSequences.OrderBy(s => s.InputIds.Length));
            var stepTokens = stepSequences.Sum(s => s.TrainedTokens);
            double lossSum = 0;
            long correct = 0, tokens = 0;
            foreach (var micro in trainer.MicroBatches(rows))
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                using var batch = Batching.Collate(micro, trainer.Model.Device);
                var result = TrainingLoss.Backward(trainer.Model, batch, 1.0 / Math.Max(stepTokens, 1), options.ActivationCheckpointing,
                    dropout, options.LogitChunkBytes);
                afterBackward();
                lossSum += result.LossSum;
                correct += result.Correct;
                tokens += batch.Tokens;
            }
            return new StepResult(lossSum / Math.Max(stepTokens, 1), correct / (double)Math.Max(stepTokens, 1), stepTokens, tokens);
        }

        public Evaluation Evaluate(IReadOnlyList<int> items)
        {
            var options = trainer.Options;
            var chosen = items.Select(i => validation[i]).ToList();
            double loss = 0;
            long correct = 0, tokens = 0;
            var rows = options.Packing ? Batching.Pack(chosen, options.MaxLength) : Batching.Single(chosen);
            foreach (var micro in trainer.MicroBatches(rows))
            {
                using var scope = NewDisposeScope();
                using var batch = Batching.Collate(micro, trainer.Model.Device);
                var result = TrainingLoss.Compute(trainer.Model, batch, options.LogitChunkBytes);
                loss += result.LossSum;
                correct += result.Correct;
                tokens += result.Tokens;
            }
            return new Evaluation(loss / Math.Max(tokens, 1), correct / (double)Math.Max(tokens, 1));
        }

        public void Save(string directory)
        {
        }

        public void Load(string directory)
        {
        }
    }

    /// <summary>
    /// DPO over preference pairs; a step's loss is the mean over its pairs. A pair's two sequences always share a
    /// micro-batch, since each one's gradient weight depends on both log-probabilities.
    /// </summary>
    private sealed class PreferenceObjective(LoraTrainer trainer, IReadOnlyList<PreferencePair> pairs, IReadOnlyList<PreferencePair> validation) : IObjective
    {
        public const string ReferenceFile = "reference_logprobs.safetensors";

        // Per pair: the reference policy's summed log-probability of the chosen and of the rejected answer.
        private double[] _reference = [];
        private double[] _validationReference = [];

        public int Count => pairs.Count;

        public int ValidationCount => validation.Count;

        public void Prepare()
        {
            _reference = trainer.WithoutTraining(() => ReferenceScores(pairs));
            _validationReference = trainer.WithoutTraining(() => ReferenceScores(validation));
        }

        private double[] ReferenceScores(IReadOnlyList<PreferencePair> set)
        {
            var scores = new double[set.Count * 2];
            foreach (var (micro, rows) in MicroBatches(Enumerable.Range(0, set.Count).ToList(), set))
            {
                using var scope = NewDisposeScope();
                var (batch, slots) = Collate(micro, rows, set);
                using (batch)
                {
                    var result = PreferenceLoss.Score(trainer.Model, batch, slots.Length, trainer.Options.LogitChunkBytes);
                    for (var k = 0; k < micro.Count; k++)
                    {
                        scores[micro[k] * 2] = result.LogProbs[slots[2 * k]];
                        scores[micro[k] * 2 + 1] = result.LogProbs[slots[2 * k + 1]];
                    }
                }
            }
            return scores;
        }

        public StepResult Step(IReadOnlyList<int> items, Generator dropout, Action afterBackward, CancellationToken cancellationToken)
        {
            var options = trainer.Options;
            var scale = 1.0 / items.Count;
            double loss = 0, margin = 0;
            long correct = 0, chosenTokens = 0, tokens = 0, trained = 0;
            var wins = 0;
            foreach (var (micro, rows) in MicroBatches(items, pairs))
            {
                cancellationToken.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var (batch, slots) = Collate(micro, rows, pairs);
                using (batch)
                {
                    var scores = PreferenceLoss.Backward(trainer.Model, batch, slots.Length, logProbs =>
                    {
                        var weights = new double[logProbs.Length];
                        for (var k = 0; k < micro.Count; k++)
                        {
                            var pair = Pair(micro[k], logProbs[slots[2 * k]], logProbs[slots[2 * k + 1]], _reference);
                            weights[slots[2 * k]] = pair.ChosenGradient * scale;
                            weights[slots[2 * k + 1]] = pair.RejectedGradient * scale;
                        }
                        return weights;
                    }, options.ActivationCheckpointing, dropout, options.LogitChunkBytes);
                    afterBackward();
                    for (var k = 0; k < micro.Count; k++)
                    {
                        var pair = Pair(micro[k], scores.LogProbs[slots[2 * k]], scores.LogProbs[slots[2 * k + 1]], _reference);
                        loss += pair.Loss;
                        margin += pair.ChosenReward - pair.RejectedReward;
                        if (pair.ChosenReward > pair.RejectedReward) wins++;
                        correct += scores.Correct[slots[2 * k]];
                        chosenTokens += scores.Tokens[slots[2 * k]];
                    }
                    trained += batch.TrainedTokens;
                    tokens += batch.Tokens;
                }
            }
            return new StepResult(loss * scale, correct / (double)Math.Max(chosenTokens, 1), trained, tokens, wins * scale, margin * scale);
        }

        public Evaluation Evaluate(IReadOnlyList<int> items)
        {
            double loss = 0;
            long correct = 0, chosenTokens = 0;
            foreach (var (micro, rows) in MicroBatches(items, validation))
            {
                using var scope = NewDisposeScope();
                var (batch, slots) = Collate(micro, rows, validation);
                using (batch)
                {
                    var scores = PreferenceLoss.Score(trainer.Model, batch, slots.Length, trainer.Options.LogitChunkBytes);
                    for (var k = 0; k < micro.Count; k++)
                    {
                        loss += Pair(micro[k], scores.LogProbs[slots[2 * k]], scores.LogProbs[slots[2 * k + 1]], _validationReference).Loss;
                        correct += scores.Correct[slots[2 * k]];
                        chosenTokens += scores.Tokens[slots[2 * k]];
                    }
                }
            }
            return new Evaluation(loss / Math.Max(items.Count, 1), correct / (double)Math.Max(chosenTokens, 1));
        }

        private PairLoss Pair(int item, double chosen, double rejected, double[] reference) =>
            PreferenceLoss.Pair(trainer.Options.Beta, chosen, rejected, reference[item * 2], reference[item * 2 + 1]);

        /// <summary>
        /// Pairs taken in order while their rows fit <see cref="TrainingOptions.MaxTokensPerMicroBatch"/> (padded size),
        /// each micro-batch with the rows it was measured by.
        /// </summary>
        private IEnumerable<(List<int> Items, List<BatchRow> Rows)> MicroBatches(IReadOnlyList<int> items, IReadOnlyList<PreferencePair> set)
        {
            var current = new List<int>();
            List<BatchRow> rows = [];
            foreach (var item in items)
            {
                var grown = Rows([.. current, item], set);
                if (current.Count > 0 && Cost(grown) > trainer.Options.MaxTokensPerMicroBatch)
                {
                    yield return (current, rows);
                    (current, grown) = ([], Rows([item], set));
                }
                current.Add(item);
                rows = grown;
            }
            if (current.Count > 0) yield return (current, rows);
        }

        private static long Cost(List<BatchRow> rows) => rows.Count * (long)rows.Max(r => r.Length);

        private List<BatchRow> Rows(IEnumerable<int> items, IReadOnlyList<PreferencePair> set)
        {
            var sequences = items.SelectMany(i => new[] { set[i].Chosen, set[i].Rejected });
            return trainer.Options.Packing ? Batching.Pack(sequences, trainer.Options.MaxLength) : Batching.Single(sequences.OrderBy(s => s.InputIds.Length));
        }

        /// <summary>The micro-batch's tensors, and for its k-th pair the batch's sequence indices of the chosen (2k) and rejected (2k+1) answer.</summary>
        private (TrainingBatch Batch, int[] Slots) Collate(List<int> micro, List<BatchRow> rows, IReadOnlyList<PreferencePair> set)
        {
            var position = new Dictionary<TrainingExample, int>(ReferenceEqualityComparer.Instance);
            foreach (var sequence in rows.SelectMany(r => r.Sequences)) position[sequence] = position.Count;
            var slots = micro.SelectMany(i => new[] { position[set[i].Chosen], position[set[i].Rejected] }).ToArray();
            return (Batching.Collate(rows, trainer.Model.Device), slots);
        }

        public void Save(string directory) =>
            Weights.SafetensorsWriter.Write(Path.Combine(directory, ReferenceFile),
            [
                new Weights.TensorData("train", "F64", [_reference.Length], System.Runtime.InteropServices.MemoryMarshal.AsBytes(_reference.AsSpan()).ToArray()),
                new Weights.TensorData("validation", "F64", [_validationReference.Length], System.Runtime.InteropServices.MemoryMarshal.AsBytes(_validationReference.AsSpan()).ToArray()),
            ]);

        public void Load(string directory)
        {
            using var file = new Weights.SafetensorsFile(Path.Combine(directory, ReferenceFile));
            double[] Read(string name, int count)
            {
                using var values = file.Read(name, ScalarType.Float64);
                if (values.numel() != count)
                    throw new InvalidOperationException($"{directory} was written for another set of preference pairs.");
                return values.data<double>().ToArray();
            }
            _reference = Read("train", pairs.Count * 2);
            _validationReference = Read("validation", validation.Count * 2);
        }
    }
}
