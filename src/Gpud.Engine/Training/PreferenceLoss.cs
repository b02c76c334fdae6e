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
/// <para>The loss couples every token of a sequence through its sum, so no token's gradient is known before every sum
/// is. One pass over the same chunks as <see cref="TrainingLoss"/> (never all logits at once) takes the sums and, in
/// closed form, each trained row's gradient of its token's log-probability, (onehot − softmax) through the head's
/// weight; the per-sequence derivatives then weight those rows into the exact DPO gradient. The head's matmul runs
/// twice per token, as in supervised training, instead of three times for a second forward and its backward.</para>
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
            var pulls = new List<Tensor>();
            using (no_grad()) scores = Sums(model, leaf, targets, batch.TrainedSequence, sequences, logitChunkBytes, pulls);
            using var weights = tensor(weigh(scores.LogProbs), ScalarType.Float32, leaf.device);
            using var inner = NewDisposeScope();
            // ∂/∂row of Σ w·log π is w(row's sequence) times that row's pull: handed to the leaf as its gradient.
            var gradient = (pulls.Count == 1 ? pulls[0] : cat(pulls, 0)).to_type(ScalarType.Float32)
                .mul_(weights.index_select(0, batch.TrainedSequence).unsqueeze(1)).to_type(leaf.dtype);
            foreach (var pull in pulls) pull.Dispose();
            leaf.mul(gradient).sum().backward();
        });
        return scores!;
    }

    /// <param name="pulls">When given, receives per chunk each row's gradient of its token's log-probability, [rows, hidden].</param>
    private static SequenceScores Sums(CausalLanguageModel model, Tensor rows, Tensor targets, Tensor sequenceOf, int sequences, long logitChunkBytes,
        List<Tensor>? pulls = null)
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
            var logSoftmax = logits.log_softmax(-1);
            var tokenLogProbs = logSoftmax.gather(1, chunkTargets.unsqueeze(1)).squeeze(1);
            logProbs.index_add_(0, index, tokenLogProbs.to_type(ScalarType.Float64), 1);
            correct.index_add_(0, index, (logits.argmax(-1) == chunkTargets).to_type(ScalarType.Int64), 1);
            if (pulls is not null)
            {
                // ∂ log softmax(z)[t] / ∂z = onehot(t) − softmax(z), then through the head as autograd would.
                var logitsGradient = logSoftmax.exp_().neg_().scatter_add_(1, chunkTargets.unsqueeze(1), ones([length, 1], logits.dtype, logits.device));
                pulls.Add(model.HiddenGradient(logitsGradient).MoveToOuterDisposeScope().MoveToOuterDisposeScope()); // out of both scopes
            }
        }
        var tokens = zeros(sequences, ScalarType.Int64, rows.device).index_add_(0, sequenceOf, ones_like(sequenceOf), 1);
        return new SequenceScores(logProbs.cpu().data<double>().ToArray(), correct.cpu().data<long>().ToArray(),
            tokens.cpu().data<long>().ToArray().Select(t => (int)t).ToArray());
    }
}
