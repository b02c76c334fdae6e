using System.Text;

namespace Gpud.Engine.Tokenization;

/// <summary>
/// BPE with byte fallback that repeatedly merges the adjacent pair of lowest rank, the leftmost one on ties. With the
/// ranks of tokenizer.json's merges it is Hugging Face tokenizers' <c>BPE::merge_word</c> (Llama 2 and Mistral
/// tokenizer.json); with ranks from piece scores it is SentencePiece's own BPE (tokenizer.model). Microsoft.ML.Tokenizers'
/// SentencePiece BPE breaks ties between equal pairs from the right ("▁▁▁", "???"), so gpud does not use it.
/// </summary>
internal sealed class MergeRankBpe
{
    private readonly Dictionary<string, int> _vocab;
    private readonly Dictionary<long, (int Rank, int Merged)> _merges = [];
    private readonly int[] _byteIds = new int[256];
    private readonly int _unknownId;

    /// <summary>Ranks from tokenizer.json merges ("left right", in priority order).</summary>
    public MergeRankBpe(Dictionary<string, int> vocab, IEnumerable<string> merges, int unknownId)
        : this(vocab, unknownId)
    {
        var rank = 0;
        foreach (var merge in merges)
        {
            var space = merge.IndexOf(' ', StringComparison.Ordinal);
            var (left, right) = (merge[..space], merge[(space + 1)..]);
            if (vocab.TryGetValue(left, out var l) && vocab.TryGetValue(right, out var r) && vocab.TryGetValue(left + right, out var m))
                _merges.TryAdd(Key(l, r), (rank, m));
            rank++;
        }
    }

    /// <summary>Ranks from SentencePiece scores: any two pieces that concatenate to a mergeable piece, higher score first.</summary>
    public MergeRankBpe(Dictionary<string, int> vocab, IReadOnlyList<(string Piece, float Score, bool Mergeable)> pieces, int unknownId)
        : this(vocab, unknownId)
    {
        var ranks = pieces.Where(p => p.Mergeable).Select(p => p.Score).Distinct().OrderByDescending(s => s)
            .Select((score, rank) => (score, rank)).ToDictionary(x => x.score, x => x.rank);
        for (var id = 0; id < pieces.Count; id++)
        {
            var (piece, score, mergeable) = pieces[id];
            if (!mergeable) continue;
            for (var split = 1; split < piece.Length; split++)
            {
                if (char.IsLowSurrogate(piece[split])) continue;
                if (vocab.TryGetValue(piece[..split], out var l) && vocab.TryGetValue(piece[split..], out var r))
                    _merges.TryAdd(Key(l, r), (ranks[score], id));
            }
        }
    }

    private MergeRankBpe(Dictionary<string, int> vocab, int unknownId)
    {
        _vocab = vocab;
        _unknownId = unknownId;
        for (var b = 0; b < 256; b++)
            _byteIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out var id) ? id : unknownId;
    }

    /// <summary>Appends the ids of an already-normalized segment (spaces as ▁) to <paramref name="ids"/>.</summary>
    public void Encode(string normalized, List<int> ids)
    {
        var symbols = new List<int>(normalized.Length);
        Span<byte> utf8 = stackalloc byte[4];
        foreach (var rune in normalized.EnumerateRunes())
        {
            if (_vocab.TryGetValue(rune.ToString(), out var id))
            {
                symbols.Add(id);
                continue;
            }
            var length = rune.EncodeToUtf8(utf8);
            for (var i = 0; i < length; i++) symbols.Add(_byteIds[utf8[i]]);
        }
        if (symbols.Count < 2)
        {
            ids.AddRange(symbols);
            return;
        }

        // Doubly linked symbols; a heap of candidate merges ordered by (rank, position), revalidated when popped.
        var next = Enumerable.Range(1, symbols.Count).ToArray();
        next[^1] = -1;
        var prev = Enumerable.Range(-1, symbols.Count).ToArray();
        var alive = Enumerable.Repeat(true, symbols.Count).ToArray();
        var queue = new PriorityQueue<(int Left, int LeftId, int RightId), (int Rank, int Position)>();
        for (var i = 0; i + 1 < symbols.Count; i++) Push(i);

        while (queue.TryDequeue(out var candidate, out _))
        {
            var (left, leftId, rightId) = candidate;
            var right = next[left];
            if (!alive[left] || right < 0 || symbols[left] != leftId || symbols[right] != rightId) continue; // stale
            symbols[left] = _merges[Key(leftId, rightId)].Merged;
            alive[right] = false;
            next[left] = next[right];
            if (next[right] >= 0) prev[next[right]] = left;
            if (prev[left] >= 0) Push(prev[left]);
            Push(left);
        }
        for (var i = 0; i >= 0; i = next[i]) ids.Add(symbols[i]);

        void Push(int left)
        {
            var right = next[left];
            if (right < 0 || !_merges.TryGetValue(Key(symbols[left], symbols[right]), out var merge)) return;
            queue.Enqueue((left, symbols[left], symbols[right]), (merge.Rank, left));
        }
    }

    private static long Key(int left, int right) => ((long)left << 32) | (uint)right;
}
