using System.Text;

namespace Gpud.Engine.Templates;

/// <summary>
/// Splits a reasoning model's answer into its leading <c>&lt;think&gt;…&lt;/think&gt;</c> block and the content after
/// it, as vLLM's reasoning parsers do (the reasoning goes to <c>reasoning_content</c>). A Qwen3 fine-tune writes an empty
/// block before every answer because its template trains one; without this, every answer's content would begin with
/// "&lt;think&gt;\n\n&lt;/think&gt;\n\n". Text that does not begin with the block is all content.
/// </summary>
public sealed class ReasoningStream
{
    public const string Open = "<think>";
    public const string Close = "</think>";

    private readonly StringBuilder _text = new();
    private int _reasoningSent;
    private int _contentSent;

    /// <summary>Adds generated text; returns the reasoning and the content that may be sent now (each possibly empty).</summary>
    public (string Reasoning, string Content) Push(string delta)
    {
        _text.Append(delta);
        return Take(final: false);
    }

    /// <summary>At the end of the answer: what is left of each (an unclosed block is all reasoning).</summary>
    public (string Reasoning, string Content) Finish() => Take(final: true);

    private (string Reasoning, string Content) Take(bool final)
    {
        var text = _text.ToString();
        var start = 0;
        while (start < text.Length && char.IsWhiteSpace(text[start])) start++;
        var head = text.AsSpan(start);
        if (!final && head.Length < Open.Length && Open.AsSpan().StartsWith(head)) return ("", ""); // may still become <think>
        if (!head.StartsWith(Open, StringComparison.Ordinal)) return ("", Send(text, 0, text.Length, ref _contentSent));

        var bodyStart = start + Open.Length;
        var close = text.IndexOf(Close, bodyStart, StringComparison.Ordinal);
        if (close < 0)
        {
            // Inside the block: send all but a tail that may be the start of </think>.
            var end = final ? text.Length : text.Length - PartialSuffix(text, Close);
            return (Send(text, bodyStart, Math.Max(end, bodyStart), ref _reasoningSent), "");
        }
        var reasoning = Send(text, bodyStart, close, ref _reasoningSent);
        // The content begins after the block and the blank lines that follow it.
        var contentStart = close + Close.Length;
        while (contentStart < text.Length && char.IsWhiteSpace(text[contentStart])) contentStart++;
        if (contentStart == text.Length && !final) return (reasoning, "");
        return (reasoning, Send(text, contentStart, text.Length, ref _contentSent));
    }

    /// <summary>text[from..to) less what was already sent from that region (the cursor is relative to it).</summary>
    private static string Send(string text, int from, int to, ref int sent)
    {
        var begin = from + sent;
        if (begin >= to) return "";
        sent = to - from;
        return text[begin..to];
    }

    private static int PartialSuffix(string text, string marker)
    {
        for (var length = Math.Min(marker.Length - 1, text.Length); length > 0; length--)
        {
            if (text.AsSpan(text.Length - length).SequenceEqual(marker.AsSpan(0, length))) return length;
        }
        return 0;
    }
}
