using Gpud.Engine.Models;
using static TorchSharp.torch;

namespace Gpud.Engine.Training;

/// <summary>Summed cross-entropy and correct-token count over a batch's trained positions.</summary>
public readonly record struct LossResult(double LossSum, long Correct, int Tokens);

/// <summary>
/// Next-token loss on trained positions only. Two things keep the logits from dominating memory (a 128k vocabulary makes
/// them [positions × 128256] in f32): the output projection runs on trained rows alone, never on prompt tokens, and it
/// runs over chunks of those rows — each chunk's logits live only while its loss and its gradient with respect to the
/// hidden rows are taken, then the accumulated gradient flows into the model in one backward pass.
/// </summary>
public static class TrainingLoss
{
    /// <summary>Default bound on one chunk's f32 logits.</summary>
    public const long DefaultLogitChunkBytes = 256L << 20;

    /// <summary>Loss and accuracy without gradients (evaluation).</summary>
    public static LossResult Compute(CausalLanguageModel model, TrainingBatch batch, long logitChunkBytes = DefaultLogitChunkBytes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var (rows, targets) = TrainedRows(model, batch);
        return Chunks(model, rows, targets, logitChunkBytes, scale: null);
    }

    /// <summary>
    /// Loss and accuracy, with the gradient of <paramref name="scale"/> × the summed loss accumulated into the trainable
    /// parameters. With <paramref name="checkpointing"/> the decoder layers are recomputed during backward
    /// (<see cref="CausalLanguageModel.BackwardCheckpointed"/>).
    /// </summary>
    public static LossResult Backward(CausalLanguageModel model, TrainingBatch batch, double scale, bool checkpointing = false,
        Generator? dropout = null, long logitChunkBytes = DefaultLogitChunkBytes)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        using var scope = NewDisposeScope();
        LossResult result = default;
        BackwardFromTrainedRows(model, batch, checkpointing, dropout, (leaf, targets) => result = Chunks(model, leaf, targets, logitChunkBytes, scale));
        return result;
    }

    /// <summary>The hidden states of the batch's trained positions (and their next tokens), without gradients.</summary>
    internal static (Tensor Rows, Tensor Targets) TrainedRows(CausalLanguageModel model, TrainingBatch batch) =>
        TrainedRows(model.Hidden(batch.InputIds, batch.PositionIds, segments: batch.Segments), batch);

    /// <summary>
    /// Runs the model over the batch and hands <paramref name="head"/> the trained positions' hidden states as a leaf
    /// (with their targets): whatever the head back-propagates into the leaf then takes the model's graph in one pass —
    /// through the recomputed layers with <paramref name="checkpointing"/>.
    /// </summary>
    internal static void BackwardFromTrainedRows(CausalLanguageModel model, TrainingBatch batch, bool checkpointing, Generator? dropout,
        Action<Tensor, Tensor> head)
    {
        void Head(Tensor hidden)
        {
            var (rows, targets) = TrainedRows(hidden, batch);
            var leaf = rows.detach().requires_grad_(true);
            head(leaf, targets);
            if (leaf.grad is { } gradient) rows.backward([gradient]);
        }

        if (checkpointing)
            model.BackwardCheckpointed(batch.InputIds, batch.PositionIds, batch.Segments, dropout, Head);
        else
            Head(model.Hidden(batch.InputIds, batch.PositionIds, segments: batch.Segments));
    }

    /// <summary>How many rows' f32 logits fit in <paramref name="logitChunkBytes"/>.</summary>
    internal static long ChunkRows(CausalLanguageModel model, long logitChunkBytes) => Math.Max(1, logitChunkBytes / (model.Config.VocabSize * 4L));

    private static (Tensor Rows, Tensor Targets) TrainedRows(Tensor hidden, TrainingBatch batch)
    {
        var trained = (batch.Labels != Batching.IgnoreIndex).nonzero();
        return (hidden[trained[.., 0], trained[.., 1]], batch.Labels[trained[.., 0], trained[.., 1]]);
    }

    /// <summary>Loss over row chunks; with a scale, each chunk's scaled loss is back-propagated into <paramref name="rows"/> (a leaf).</summary>
    private static LossResult Chunks(CausalLanguageModel model, Tensor rows, Tensor targets, long logitChunkBytes, double? scale)
    {
        var count = rows.shape[0];
        var chunk = ChunkRows(model, logitChunkBytes);
        using var lossSum = zeros(1, ScalarType.Float64, rows.device);
        using var correct = zeros(1, ScalarType.Int64, rows.device);
        for (long start = 0; start < count; start += chunk)
        {
            using var scope = NewDisposeScope();
            var length = Math.Min(chunk, count - start);
            var logits = model.Logits(rows.narrow(0, start, length));
            var chunkTargets = targets.narrow(0, start, length);
            var loss = nn.functional.cross_entropy(logits, chunkTargets, reduction: nn.Reduction.Sum);
            if (scale is { } s) (loss * s).backward();
            using (no_grad())
            {
                lossSum.add_(loss.detach().to_type(ScalarType.Float64));
                correct.add_((logits.argmax(-1) == chunkTargets).sum());
            }
        }
        return new LossResult(lossSum.item<double>(), correct.item<long>(), (int)count);
    }
}
