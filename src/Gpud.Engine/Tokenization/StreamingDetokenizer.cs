namespace Gpud.Engine.Tokenization;

/// <summary>
/// Turns a stream of token ids into text deltas without ever splitting a UTF-8 character or a SentencePiece space:
/// each step decodes a short window of recent ids and emits only what that window added, holding text back while it
/// ends in an incomplete character (U+FFFD). The same scheme as vLLM's incremental detokenization.
/// </summary>
public sealed class StreamingDetokenizer(TextTokenizer tokenizer, bool skipSpecialTokens = true)
{
    private readonly List<int> _ids = [];
    private int _prefixOffset;
    private int _readOffset;

    /// <summary>Adds one token; returns the text it completes (possibly empty).</summary>
    public string Add(int tokenId)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _ids.Add(tokenId);
        var (prefix, full) = Window();
        if (full.Length <= prefix.Length || full.EndsWith('\uFFFD')) return "";
        var delta = full[prefix.Length..];
        _prefixOffset = _readOffset;
        _readOffset = _ids.Count;
        return delta;
    }

    /// <summary>Whatever is still held back at the end of the stream (an incomplete character decodes as U+FFFD).</summary>
    public string Flush()
    {
        var (prefix, full) = Window();
        _prefixOffset = _readOffset = _ids.Count;
        return full.Length > prefix.Length ? full[prefix.Length..] : "";
    }

    private (string Prefix, string Full) Window()
    {
        var atStart = _prefixOffset == 0;
        return (tokenizer.DecodeWindow(_ids.GetRange(_prefixOffset, _readOffset - _prefixOffset), skipSpecialTokens, atStart),
                tokenizer.DecodeWindow(_ids.GetRange(_prefixOffset, _ids.Count - _prefixOffset), skipSpecialTokens, atStart));
    }
}
