namespace Gpud.Engine.Generation.Constraints;

/// <summary>
/// A reader of text byte by byte that says which bytes may come next: the state of a structured-output rule. A value
/// type with value equality, so that a walk over the vocabulary copies it at each branch and the tokens a state allows
/// can be remembered by state (<see cref="TokenMasks{TGrammar}"/>).
/// </summary>
public interface IByteGrammar<TSelf> : IEquatable<TSelf>
    where TSelf : struct, IByteGrammar<TSelf>
{
    /// <summary>The text is whole: nothing more may follow.</summary>
    bool IsComplete { get; }

    /// <summary>Reads one byte; false (the state then unusable) if no accepted text continues with it.</summary>
    bool Advance(byte c);
}

/// <summary>A sequence-level rule on which tokens may come next (structured output).</summary>
public interface ITokenConstraint
{
    /// <summary>Nothing more may be generated: the sequence ends here.</summary>
    bool IsComplete { get; }

    /// <summary>
    /// Sets the bits of the tokens that may come next (token t is bit t % 64 of word t / 64) and clears the rest; the
    /// span has a word for every 64 tokens of the model's vocabulary.
    /// </summary>
    void Allowed(Span<ulong> allowed);

    /// <summary>Takes the chosen token (one that <see cref="Allowed"/> marked).</summary>
    void Advance(int tokenId);
}

/// <summary>A grammar's rule over a vocabulary: each step allows exactly the tokens whose bytes the grammar accepts.</summary>
public sealed class GrammarConstraint<TGrammar>(TokenTrie trie, TGrammar start, TokenMasks<TGrammar> masks) : ITokenConstraint
    where TGrammar : struct, IByteGrammar<TGrammar>
{
    private TGrammar _state = start;

    public bool IsComplete => _state.IsComplete;

    public void Allowed(Span<ulong> allowed) => masks.Allowed(trie, _state, allowed);

    public void Advance(int tokenId)
    {
        var bytes = trie.Bytes(tokenId) ?? throw new InvalidOperationException($"Token {tokenId} has no text; the constraint never allows it.");
        foreach (var b in bytes)
        {
            if (!_state.Advance(b)) throw new InvalidOperationException($"Token {tokenId} does not continue the structured output; the constraint never allows it.");
        }
    }
}

/// <summary>
/// The tokens each grammar state allows, remembered as bitsets (a 128k vocabulary's is 16 KB): a long string value
/// stays in one state for many steps, and walking a 128k vocabulary inside a string visits nearly all of it.
/// </summary>
/// <param name="capacity">States kept; past it all are forgotten at once (rare) rather than tracking age.</param>
public sealed class TokenMasks<TGrammar>(int capacity) where TGrammar : struct, IByteGrammar<TGrammar>
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<TGrammar, ulong[]> _remembered = new();

    /// <summary>Sets the bits of exactly the tokens whose bytes the grammar accepts from <paramref name="state"/> (the rest are cleared).</summary>
    public void Allowed(TokenTrie trie, TGrammar state, Span<ulong> allowed)
    {
        ArgumentNullException.ThrowIfNull(trie);
        if (!_remembered.TryGetValue(state, out var bits))
        {
            var walked = new bool[trie.VocabSize];
            trie.Walk(state, walked);
            bits = new ulong[(walked.Length + 63) / 64];
            for (var id = 0; id < walked.Length; id++)
            {
                if (walked[id]) bits[id >> 6] |= 1UL << (id & 63);
            }
            if (_remembered.Count >= capacity) _remembered.Clear();
            _remembered[state] = bits;
        }
        allowed.Clear();
        bits.AsSpan(0, Math.Min(bits.Length, allowed.Length)).CopyTo(allowed);
    }
}
