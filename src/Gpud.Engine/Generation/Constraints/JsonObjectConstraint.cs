using Gpud.Engine.Tokenization;

namespace Gpud.Engine.Generation.Constraints;

/// <summary>
/// Restricts a sequence's tokens so that its text is one JSON object (OpenAI's <c>response_format: json_object</c>).
/// Each step the vocabulary's byte strings, shared in a trie, are walked from the current grammar state: a branch is
/// cut at the first byte the grammar refuses, so the cost follows what the grammar allows, not vocabulary × token length.
/// Special tokens (end of text included) are never allowed; the sequence ends when the object closes.
/// </summary>
public sealed class JsonObjectConstraint(TokenTrie trie) : ITokenConstraint
{
    private JsonObjectGrammar _state = JsonObjectGrammar.Start;

    public bool IsComplete => _state.IsComplete;

    public void Allowed(Span<bool> allowed) => trie.Allowed(_state, allowed);

    public void Advance(int tokenId)
    {
        var bytes = trie.Bytes(tokenId) ?? throw new InvalidOperationException($"Token {tokenId} has no text; the constraint never allows it.");
        foreach (var b in bytes)
        {
            if (!_state.Advance(b)) throw new InvalidOperationException($"Token {tokenId} does not continue the JSON object; the constraint never allows it.");
        }
    }
}

/// <summary>A sequence-level rule on which tokens may come next (structured output).</summary>
public interface ITokenConstraint
{
    /// <summary>Nothing more may be generated: the sequence ends here.</summary>
    bool IsComplete { get; }

    /// <summary>Marks the tokens that may come next (span of the vocabulary's size).</summary>
    void Allowed(Span<bool> allowed);

    /// <summary>Takes the chosen token (one that <see cref="Allowed"/> marked).</summary>
    void Advance(int tokenId);
}

/// <summary>
/// The vocabulary's tokens as byte strings in a trie (built once per tokenizer): node 0 is the root; a node's children
/// are a sorted run of (byte, node) and the tokens that end there. Tokens without text (special tokens) are left out.
/// The allowed set of each grammar state is remembered (as a bitset): a long string value stays in one state for many
/// steps, and walking a 128k vocabulary inside a string visits nearly all of it.
/// </summary>
public sealed class TokenTrie
{
    /// <summary>States whose allowed sets are kept (a 128k vocabulary's bitset is 16 KB).</summary>
    public const int MaxRememberedStates = 1024;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<JsonObjectGrammar, ulong[]> _remembered = new();
    private readonly byte[]?[] _bytes;
    private readonly int[] _childStart; // per node: index of its first child in _childBytes/_childNodes
    private readonly int[] _childCount;
    private readonly byte[] _childBytes;
    private readonly int[] _childNodes;
    private readonly int[] _tokenStart; // per node: index of its first ending token in _tokens
    private readonly int[] _tokenCount;
    private readonly int[] _tokens;

    public TokenTrie(IReadOnlyList<byte[]?> tokenBytes)
    {
        ArgumentNullException.ThrowIfNull(tokenBytes);
        _bytes = tokenBytes.ToArray();
        // Build with dictionaries, then flatten into arrays for a cache-friendly walk.
        var children = new List<SortedDictionary<byte, int>> { new() };
        var ending = new List<List<int>> { new() };
        for (var id = 0; id < _bytes.Length; id++)
        {
            if (_bytes[id] is not { Length: > 0 } bytes) continue;
            var node = 0;
            foreach (var b in bytes)
            {
                if (!children[node].TryGetValue(b, out var next))
                {
                    next = children.Count;
                    children[node][b] = next;
                    children.Add(new SortedDictionary<byte, int>());
                    ending.Add([]);
                }
                node = next;
            }
            ending[node].Add(id);
        }
        var nodes = children.Count;
        (_childStart, _childCount, _tokenStart, _tokenCount) = (new int[nodes], new int[nodes], new int[nodes], new int[nodes]);
        var childBytes = new List<byte>();
        var childNodes = new List<int>();
        var tokens = new List<int>();
        for (var n = 0; n < nodes; n++)
        {
            (_childStart[n], _childCount[n]) = (childBytes.Count, children[n].Count);
            foreach (var (b, child) in children[n])
            {
                childBytes.Add(b);
                childNodes.Add(child);
            }
            (_tokenStart[n], _tokenCount[n]) = (tokens.Count, ending[n].Count);
            tokens.AddRange(ending[n]);
        }
        (_childBytes, _childNodes, _tokens) = (childBytes.ToArray(), childNodes.ToArray(), tokens.ToArray());
    }

    public int VocabSize => _bytes.Length;

    /// <summary>The token's bytes; null for tokens without text.</summary>
    public byte[]? Bytes(int tokenId) => tokenId >= 0 && tokenId < _bytes.Length ? _bytes[tokenId] : null;

    /// <summary>Sets exactly the tokens whose bytes the grammar accepts from <paramref name="state"/> (the rest of the span is cleared).</summary>
    public void Allowed(JsonObjectGrammar state, Span<bool> allowed)
    {
        if (!_remembered.TryGetValue(state, out var bits))
        {
            var walked = new bool[_bytes.Length];
            Walk(state, walked);
            bits = new ulong[(_bytes.Length + 63) / 64];
            for (var id = 0; id < walked.Length; id++)
            {
                if (walked[id]) bits[id >> 6] |= 1UL << (id & 63);
            }
            if (_remembered.Count >= MaxRememberedStates) _remembered.Clear(); // rare: forget all rather than track age
            _remembered[state] = bits;
        }
        allowed.Clear();
        for (var word = 0; word < bits.Length; word++)
        {
            for (var rest = bits[word]; rest != 0; rest &= rest - 1)
                allowed[word * 64 + System.Numerics.BitOperations.TrailingZeroCount(rest)] = true;
        }
    }

    /// <summary>Marks every token whose bytes the grammar accepts from <paramref name="state"/>.</summary>
    public void Walk(JsonObjectGrammar state, Span<bool> allowed)
    {
        var stack = new Stack<(int Node, JsonObjectGrammar State)>();
        stack.Push((0, state));
        while (stack.Count > 0)
        {
            var (node, at) = stack.Pop();
            for (var c = _childStart[node]; c < _childStart[node] + _childCount[node]; c++)
            {
                var next = at;
                if (!next.Advance(_childBytes[c])) continue;
                var child = _childNodes[c];
                for (var t = _tokenStart[child]; t < _tokenStart[child] + _tokenCount[child]; t++) allowed[_tokens[t]] = true;
                if (_childCount[child] > 0) stack.Push((child, next));
            }
        }
    }
}
