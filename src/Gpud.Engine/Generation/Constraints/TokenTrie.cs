namespace Gpud.Engine.Generation.Constraints;

/// <summary>
/// The vocabulary's tokens as byte strings in a trie (built once per tokenizer): node 0 is the root; a node's children
/// are a sorted run of (byte, node) and the tokens that end there. Tokens without text (special tokens) are left out.
/// A walk cuts a branch at the first byte the grammar refuses, so its cost follows what the grammar allows, not
/// vocabulary × token length.
/// </summary>
public sealed class TokenTrie
{
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

    /// <summary>Marks every token whose bytes the grammar accepts from <paramref name="state"/>.</summary>
    public void Walk<TGrammar>(TGrammar state, Span<bool> allowed) where TGrammar : struct, IByteGrammar<TGrammar>
    {
        var stack = new Stack<(int Node, TGrammar State)>();
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
