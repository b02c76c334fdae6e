namespace Gpud.Engine.Training;

/// <summary>
/// One sequence to train on: token ids and, per position, whether that token counts toward the loss (assistant
/// tokens and their end-of-turn token, as OpenAI and TRL train). <see cref="Line"/> is the 1-based JSONL line.
/// </summary>
public sealed record TrainingExample(int[] InputIds, bool[] LossMask, int Line, bool Truncated)
{
    /// <summary>Tokens the loss is taken on: position 0 is never predicted, so its mask does not count.</summary>
    public int TrainedTokens => LossMask.Skip(1).Count(m => m);
}

/// <summary>
/// One preference example (DPO): the same prompt answered two ways, each a sequence whose loss mask covers its answer.
/// </summary>
public sealed record PreferencePair(TrainingExample Chosen, TrainingExample Rejected);

/// <summary>What a job trains on: demonstrations (supervised: imitate the assistant turns) or preference pairs (DPO).</summary>
public enum TrainingObjective
{
    Supervised,
    Preference,
}

/// <summary>A training file that cannot be trained on, with OpenAI's error code and the parameter to blame.</summary>
public sealed class TrainingDataException(string code, string message, string param = "training_file") : Exception(message)
{
    public string Code { get; } = code;

    public string Param { get; } = param;
}
