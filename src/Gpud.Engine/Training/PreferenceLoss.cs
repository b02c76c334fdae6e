using Gpud.Engine.Models;
using static TorchSharp.torch;

namespace Gpud.Engine.Training;

/// <summary>Per sequence of a batch (row by row): the summed log-probability of its trained tokens, and how many of them
/// the model predicts correctly.</summary>
public sealed record SequenceScores(double[] LogProbs, long[] Correct, int[] Tokens);

/// <summary>What the DPO loss of one pair is, and how it pulls on each answer's log-probability.</summary>
public readonly record struct PairLoss(double Loss, double ChosenReward, double RejectedReward, double ChosenGradient, double RejectedGradient);

/// <summary>
/// Direct Preference Optimization (Rafailov et al., 2023; the sigmoid loss of TRL's DPOTrainer): for a prompt answered
/// with a preferred and a non-preferred output, loss = −log σ(β·[(log π(chosen) − log π_ref(chosen)) − (log π(rejected) −
/// log π_ref(rejected))]), each log π summed over the answer's tokens.
/// <para>The loss couples every token of a sequence through its sum, so the logits are taken twice over the same chunks
/// as <see cref="TrainingLoss"/> (never all at once): first without gradients to get each sequence's sum, then with the
/// per-sequence derivative as each token's weight, which back-propagates the exact DPO gradient.</para>
/// </summary>
public static class PreferenceLoss
{
    /// <summary>OpenAI's (and TRL's) default β: how far the policy may drift from the reference.</summary>
    public const double DefaultBeta = 0.1;

    /// <summary>The loss of one pair from the policy's and the reference's summed log-probabilities.</summary>
    public static PairLoss Pair(double beta, double policyChosen, double policyRejected, double referenceChosen, double referenceRejected)
    {
        var chosen = beta * (policyChosen - referenceChosen);
        var rejected = beta * (policyRejected - referenceRejected);
        var z = chosen - rejected;
        var loss = Math.Max(-z, 0) + Math.Log(1 + Math.Exp(-Math.Abs(z))); // softplus(−z), stable both ways
        var pull = beta / (1 + Math.Exp(z)); // β·σ(−z)
        return new PairLoss(loss, chosen, rejected, -pull, pull);
    }

    /// <summary>Per-sequence scores without gradients (reference log-probabilities, evaluation).</summary>
    public static SequenceScores Score(CausalLanguageModel model, TrainingBatch batch, int sequences, long logitChunkBytes = TrainingLoss.DefaultLogitChunkBytes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var (rows, targets) = TrainingLoss.TrainedRows(model, batch);
        return Sums(model, rows, targets, batch.TrainedSequence, sequences, logitChunkBytes);
    }

    /// <summary>
    /// Per-sequence scores, with the gradient of Σ<sub>s</sub> w<sub>s</sub>·log π(s) accumulated into the trainable
    /// parameters, where <paramref name="weigh"/> turns the sequences' log-probabilities into the weights w (the loss's
    /// derivative with respect to each, already scaled for gradient accumulation).
    /// </summary>
    public static SequenceScores Backward(CausalLanguageModel model, TrainingBatch batch, int sequences, Func<double[], double[]> weigh,
        bool checkpointing = false, Generator? dropout = null, long logitChunkBytes = TrainingLoss.DefaultLogitChunkBytes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        ArgumentNullException.ThrowIfNull(weigh);
        using var scope = NewDisposeScope();
        SequenceScores? scores = null;
        TrainingLoss.BackwardFromTrainedRows(model, batch, checkpointing, dropout, (leaf, targets) =>
        {
            using (no_grad()) scores = Sums(model, leaf, targets, batch.TrainedSequence, sequences, logitChunkBytes);
            using var weights = tensor(weigh(scores.LogProbs), ScalarType.Float32, leaf.device);
            var chunk = TrainingLoss.ChunkRows(model, logitChunkBytes);
            for (long start = 0; start < leaf.shape[0]; start += chunk)
            {
                using var inner = NewDisposeScope();
                var length = Math.Min(chunk, leaf.shape[0] - start);
                var logProbs = -nn.functional.cross_entropy(model.Logits(leaf.narrow(0, start, length)), targets.narrow(0, start, length),
                    reduction: nn.Reduction.None);
                (logProbs * weights.index_select(0, batch.TrainedSequence.narrow(0, start, length))).sum().backward();
            }
        });
        return scores!;
    }

    private static SequenceScores Sums(CausalLanguageModel model, Tensor rows, Tensor targets, Tensor sequenceOf, int sequences, long logitChunkBytes)
    {
        using var scope = NewDisposeScope();
        var logProbs = zeros(sequences, ScalarType.Float64, rows.device);
        var correct = zeros(sequences, ScalarType.Int64, rows.device);
        var chunk = TrainingLoss.ChunkRows(model, logitChunkBytes);
        for (long start = 0; start < rows.shape[0]; start += chunk)
        {
            using var inner = NewDisposeScope();
            var length = Math.Min(chunk, rows.shape[0] - start);
            var logits = model.Logits(rows.narrow(0, start, length));
            var chunkTargets = targets.narrow(0, start, length);
            var index = sequenceOf.narrow(0, start, length);
            logProbs.index_add_(0, index, (-nn.functional.cross_entropy(logits, chunkTargets, reduction: nn.Reduction.None)).to_type(ScalarType.Float64), 1);
            correct.index_add_(0, index, (logits.argmax(-1) == chunkTargets).to_type(ScalarType.Int64), 1);
        }
        var tokens = zeros(sequences, ScalarType.Int64, rows.device).index_add_(0, sequenceOf, ones_like(sequenceOf), 1);
        return new SequenceScores(logProbs.cpu().data<double>().ToArray(), correct.cpu().data<long>().ToArray(),
            tokens.cpu().data<long>().ToArray().Select(t => (int)t).ToArray());
    }
}
