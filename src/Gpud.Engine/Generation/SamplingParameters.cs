namespace Gpud.Engine.Generation;

/// <summary>How one sequence is decoded. Temperature 0 means greedy (argmax).</summary>
/// <param name="TopK">0 disables top-k.</param>
/// <param name="TopP">1 disables nucleus sampling.</param>
/// <param name="Seed">Fixes the sampling RNG of this sequence: same seed, same prompt, same device → same tokens.</param>
/// <param name="StopTokenIds">Tokens that end the sequence (usually the model's EOS ids); not included in the output.</param>
/// <param name="TopLogprobs">Alternatives to report per generated token (0-20); null reports no logprobs at all.</param>
/// <param name="PresencePenalty">OpenAI's: subtracted once from the logit of every token already generated.</param>
/// <param name="FrequencyPenalty">OpenAI's: subtracted from a token's logit once per time it was generated.</param>
/// <param name="LogitBias">Added to the logits of these token ids before choosing (-100 bans, 100 forces).</param>
/// <param name="Constraint">Makes each sequence's structured-output rule (one per sequence: it keeps that sequence's
/// state); the sequence ends when its rule is complete.</param>
public sealed record SamplingParameters(
    int MaxTokens,
    double Temperature = 1.0,
    double TopP = 1.0,
    int TopK = 0,
    long? Seed = null,
    IReadOnlyCollection<int>? StopTokenIds = null,
    int? TopLogprobs = null,
    double PresencePenalty = 0,
    double FrequencyPenalty = 0,
    IReadOnlyDictionary<int, float>? LogitBias = null,
    Func<Constraints.ITokenConstraint>? Constraint = null)
{
    /// <summary>True when the logits need adjusting before a token is chosen.</summary>
    public bool AdjustsLogits => PresencePenalty != 0 || FrequencyPenalty != 0 || LogitBias is { Count: > 0 };

    public static SamplingParameters Greedy(int maxTokens, IReadOnlyCollection<int>? stopTokenIds = null) =>
        new(maxTokens, Temperature: 0, StopTokenIds: stopTokenIds);
}

/// <summary>Why a sequence ended, with OpenAI's <c>finish_reason</c> names.</summary>
public enum FinishReason
{
    /// <summary>A stop token or a stop condition of the caller.</summary>
    Stop,

    /// <summary><see cref="SamplingParameters.MaxTokens"/> reached (or the context filled up).</summary>
    Length,

    /// <summary>The caller cancelled (client gone); nothing is reported to anyone.</summary>
    Cancelled,
}

/// <summary>A generated token with its log-probability under the model and the most likely alternatives.</summary>
public sealed record TokenLogprob(int TokenId, float Logprob, IReadOnlyList<(int TokenId, float Logprob)> Top);

/// <summary>The outcome for one sequence.</summary>
public sealed record GenerationResult(IReadOnlyList<int> TokenIds, IReadOnlyList<TokenLogprob>? Logprobs, FinishReason FinishReason, int PromptTokens);
