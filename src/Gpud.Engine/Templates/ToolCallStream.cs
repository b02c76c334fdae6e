using System.Text;

namespace Gpud.Engine.Templates;

/// <summary>
/// Streams a choice's content while holding back whatever may be the start of a tool call, so a client never receives
/// a call's raw text as content; at the end the held text becomes calls or, if it was none, content after all.
/// </summary>
public sealed class ToolCallStream(IReadOnlySet<string> tools)
{
    private readonly StringBuilder _text = new();
    private int _sent;

    /// <summary>Adds generated text; returns the content that may be sent now (possibly empty).</summary>
    public string Push(string delta)
    {
        _text.Append(delta);
        var text = _text.ToString();
        var end = Math.Max(ToolCallParser.HoldFrom(text) ?? text.Length, _sent);
        var ready = text[_sent..end];
        _sent = end;
        return ready;
    }

    /// <summary>At the end of the choice: the content not yet sent, and the calls (empty when the output held none).</summary>
    public (string Content, IReadOnlyList<ParsedToolCall> Calls) Finish(bool complete)
    {
        var text = _text.ToString();
        if (complete && ToolCallParser.Parse(text, tools) is { } output)
        {
            var before = output.Content ?? "";
            var unsent = text.IndexOf(before, StringComparison.Ordinal) is var at and >= 0 && at + before.Length > _sent ? text[_sent..(at + before.Length)] : "";
            return (unsent, output.Calls);
        }
        return (text[_sent..], []);
    }
}
