using Gpud.Engine.Tokenization;

namespace Gpud.Engine.Generation;

/// <summary>
/// One sequence's generated tokens as text, with OpenAI's stop sequences: the text ends before the first occurrence
/// of any stop string, which is never included. While streaming, the last <c>longest stop - 1</c> characters are held
/// back because they might begin a stop string, so the streamed pieces always add up to exactly the final text.
/// </summary>
public sealed class TextStream
{
    private readonly StreamingDetokenizer _detokenizer;
    private readonly List<string> _stops;
    private readonly int _holdBack;
    private readonly System.Text.StringBuilder _text = new();
    private string _pending = ""; // decoded, not yet emitted

    public TextStream(TextTokenizer tokenizer, IReadOnlyList<string>? stops = null)
    {
        _detokenizer = new StreamingDetokenizer(tokenizer);
        _stops = (stops ?? []).Where(s => s.Length > 0).ToList();
        _holdBack = _stops.Count == 0 ? 0 : _stops.Max(s => s.Length) - 1;
    }

    /// <summary>True once a stop string appeared; no more text follows.</summary>
    public bool Stopped { get; private set; }

    /// <summary>Everything emitted so far (the final text once the sequence ends).</summary>
    public string Text => _text.ToString();

    /// <summary>Adds a token; returns the text that can be sent now (possibly empty).</summary>
    public string Add(int tokenId)
    {
        if (Stopped) return "";
        _pending += _detokenizer.Add(tokenId);
        return Release(final: false);
    }

    /// <summary>Ends the sequence: releases the held-back text.</summary>
    public string Finish()
    {
        if (Stopped) return "";
        _pending += _detokenizer.Flush();
        return Release(final: true);
    }

    private string Release(bool final)
    {
        // A stop string may straddle what was emitted and what is pending only within the held-back tail, which was
        // never emitted: so searching the pending text alone is enough.
        var cut = -1;
        foreach (var stop in _stops)
        {
            var at = _pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        string emit;
        if (cut >= 0)
        {
            emit = _pending[..cut];
            _pending = "";
            Stopped = true;
        }
        else
        {
            var keep = final ? 0 : Math.Min(_holdBack, _pending.Length);
            // Never split a surrogate pair between two chunks.
            if (keep < _pending.Length && keep > 0 && char.IsLowSurrogate(_pending[^keep])) keep++;
            emit = _pending[..(_pending.Length - keep)];
            _pending = _pending[(_pending.Length - keep)..];
        }
        _text.Append(emit);
        return emit;
    }
}
