namespace Gpud.Engine.Training;

/// <summary>
/// What OpenAI's <c>"auto"</c> hyperparameters resolve to, and gpud's base learning rate. n_epochs follows the
/// fine-tuning cookbook's heuristic; batch_size is ~0.2% of the examples, capped at 256 (OpenAI's documentation); the
/// learning rate is a base rate for LoRA by model size (a tenth of it for DPO) times <c>learning_rate_multiplier</c> ("auto" = 1).
/// </summary>
public static class AutoHyperparameters
{
    public const int TargetEpochs = 3;
    public const int MinTargetExamples = 100;
    public const int MaxTargetExamples = 25_000;
    public const int MinEpochs = 1;
    public const int MaxAutoEpochs = 25;
    public const int MaxBatchSize = 256;

    /// <summary>3 epochs, raised so that examples × epochs ≥ 100 and lowered so that it is ≤ 25,000, within 1..25.</summary>
    public static int Epochs(int examples)
    {
        if (examples <= 0) return TargetEpochs;
        if (examples * TargetEpochs < MinTargetExamples) return Math.Min(MaxAutoEpochs, MinTargetExamples / examples);
        if ((long)examples * TargetEpochs > MaxTargetExamples) return Math.Max(MinEpochs, MaxTargetExamples / examples);
        return TargetEpochs;
    }

    public static int BatchSize(int examples) => Math.Clamp((int)Math.Ceiling(examples * 0.002), 1, MaxBatchSize);

    /// <summary>
    /// DPO trains at a tenth of the supervised rate: it nudges a policy's preferences rather than teaching it new text,
    /// and LoRA DPO recipes run at 5e-6..5e-5 where supervised LoRA runs at 2e-4; larger steps collapse both answers' likelihood.
    /// </summary>
    public const double PreferenceRateFactor = 0.1;

    /// <summary>
    /// Base LoRA learning rate by model size: 2e-4 up to 10B parameters (the common LoRA default), 1e-4 above;
    /// models under 10M parameters (gpud-tiny and test models) train at 5e-3.
    /// </summary>
    public static double BaseLearningRate(long parameters) => parameters switch
    {
        < 10_000_000 => 5e-3,
        <= 10_000_000_000 => 2e-4,
        _ => 1e-4,
    };
}
