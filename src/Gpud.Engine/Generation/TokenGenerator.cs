using Gpud.Engine.Models;

namespace Gpud.Engine.Generation;

/// <summary>
/// Generation of a fixed set of prompts to the end, for benchmarks, tests and offline use: the prompts are prefilled
/// together into a <see cref="ContinuousBatcher"/> sized for exactly this batch, then decoded step by step until all finish. Each
/// sequence has its own sampling parameters and RNG, so a prompt's output does not depend on what else is in the batch.
/// </summary>
/// <param name="adapters">Serving adapters the prompts may use (see <c>adapterSlots</c> of <see cref="Generate"/>), or null.</param>
public sealed class TokenGenerator(CausalLanguageModel model, Lora.AdapterPool? adapters = null)
{
    /// <summary>Called after every token with each sequence's tokens so far; returning true stops that sequence.</summary>
    public delegate bool StopCondition(int sequence, IReadOnlyList<int> generated);

    /// <summary>Generates for every prompt. <paramref name="onToken"/> sees each new token as it is chosen (streaming).</summary>
    /// <param name="adapterSlots">Each prompt's slot in the generator's adapter pool (0: the base model); null for the base model throughout.</param>
    public IReadOnlyList<GenerationResult> Generate(
        IReadOnlyList<IReadOnlyList<int>> prompts,
        IReadOnlyList<SamplingParameters> parameters,
        StopCondition? stop = null,
        Action<int, int>? onToken = null,
        IReadOnlyList<int>? adapterSlots = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(parameters);
        if (prompts.Count == 0) return [];
        if (prompts.Count != parameters.Count) throw new ArgumentException("One SamplingParameters per prompt is needed.", nameof(parameters));
        if (prompts.Any(p => p.Count == 0)) throw new ArgumentException("A prompt needs at least one token.", nameof(prompts));
        if (adapterSlots is not null && (adapterSlots.Count != prompts.Count || (adapters is null && adapterSlots.Any(s => s != 0))))
            throw new ArgumentException("One adapter slot per prompt is needed, and slots other than 0 need an adapter pool.", nameof(adapterSlots));

        var capacity = prompts.Select((p, i) => p.Count + parameters[i].MaxTokens).Max() + 1;
        var collectors = prompts.Select((_, i) => new Collector(i, parameters[i].TopLogprobs is not null, stop, onToken)).ToList();
        using var batcher = new ContinuousBatcher(model, prompts.Count, capacity, adapters);
        // One prefill for the whole batch: admitted one by one, 32 prompts took 32 forward passes (0.23x transformers'
        // prefill rate at batch 32 on an H200).
        batcher.Admit(prompts.Select((p, i) => new SequenceGroup(p, [parameters[i]], collectors[i], adapterSlots?[i] ?? 0, CancellationToken: cancellationToken)).ToList());
        while (batcher.Running > 0) batcher.Step();
        return collectors.Select((c, i) => new GenerationResult(c.Tokens, c.Logprobs, c.Finish ?? FinishReason.Length, prompts[i].Count)).ToList();
    }

    private sealed class Collector(int index, bool logprobs, StopCondition? stop, Action<int, int>? onToken) : ISequenceSink
    {
        public List<int> Tokens { get; } = [];
        public List<TokenLogprob>? Logprobs { get; } = logprobs ? [] : null;
        public FinishReason? Finish { get; private set; }

        public void OnPromptLogprobs(IReadOnlyList<TokenLogprob?> logprobs)
        {
        }

        public bool OnToken(int choice, int tokenId, TokenLogprob? logprob)
        {
            Tokens.Add(tokenId);
            if (logprob is not null) Logprobs?.Add(logprob);
            onToken?.Invoke(index, tokenId);
            return stop?.Invoke(index, Tokens) != true;
        }

        public void OnFinished(int choice, FinishReason reason) => Finish = reason;
    }
}
