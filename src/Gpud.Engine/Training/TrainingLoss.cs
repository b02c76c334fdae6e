using Gpud.Engine.Models;
using static TorchSharp.torch;

namespace Gpud.Engine.Training;

/// <summary>Summed cross-entropy and correct-token count over a batch's trained positions.</summary>
public readonly record struct LossResult(Tensor LossSum, long Correct, int Tokens);

/// <summary>
/// Next-token loss on trained positions only: the output projection runs on those rows alone, so prompt tokens never
/// cost a [positions × vocabulary] logits tensor (which dominates memory for 128k-token vocabularies).
/// </summary>
public static class TrainingLoss
{
    public static LossResult Compute(CausalLanguageModel model, TrainingBatch batch)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(batch);
        using var scope = NewDisposeScope();
        var hidden = model.Hidden(batch.InputIds, batch.PositionIds, batch.AttentionMask);
        var trained = (batch.Labels != Batching.IgnoreIndex).nonzero();
        var rows = hidden[trained[.., 0], trained[.., 1]];
        var targets = batch.Labels[trained[.., 0], trained[.., 1]];
        var logits = model.Logits(rows);
        var loss = nn.functional.cross_entropy(logits, targets, reduction: nn.Reduction.Sum);
        long correct;
        using (no_grad())
        {
            correct = (logits.argmax(-1) == targets).sum().item<long>();
        }
        return new LossResult(loss.MoveToOuterDisposeScope(), correct, (int)targets.shape[0]);
    }
}
