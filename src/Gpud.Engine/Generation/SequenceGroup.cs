namespace Gpud.Engine.Generation;

/// <summary>
/// Receives a <see cref="SequenceGroup"/>'s output on the batcher's thread, as it happens. Implementations hand it to
/// another thread (a channel) and return at once: the whole batch waits on every call.
/// </summary>
public interface ISequenceSink
{
    /// <summary>For echo with logprobs: each prompt token's logprob given the tokens before it (index 0 is null).</summary>
    void OnPromptLogprobs(IReadOnlyList<TokenLogprob?> logprobs);

    /// <summary>A generated token of one choice. Returning false ends that choice here (a stop string matched).</summary>
    bool OnToken(int choice, int tokenId, TokenLogprob? logprob);

    void OnFinished(int choice, FinishReason reason);
}

/// <summary>
/// One request to the batcher: a prompt, one <see cref="SamplingParameters"/> per choice (n or best_of of them, each
/// with its own seed), and the adapter pool slot its rows use (0: the base model). The prompt is prefilled once and
/// its cache copied to every choice's row.
/// </summary>
/// <param name="PromptLogprobs">Alternatives per prompt token to report through <see cref="ISequenceSink.OnPromptLogprobs"/>; null for none.</param>
/// <param name="CancellationToken">Cancelled when nobody waits any longer (client gone): its rows leave the batch at the next step.</param>
public sealed record SequenceGroup(
    IReadOnlyList<int> Prompt,
    IReadOnlyList<SamplingParameters> Choices,
    ISequenceSink Sink,
    int AdapterSlot = 0,
    int? PromptLogprobs = null,
    CancellationToken CancellationToken = default);
