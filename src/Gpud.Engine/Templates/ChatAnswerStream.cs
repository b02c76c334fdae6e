namespace Gpud.Engine.Templates;

/// <summary>What a chat answer holds once read: reasoning (null if none), content, and the tool calls it makes.</summary>
public sealed record ChatAnswer(string? Reasoning, string Content, IReadOnlyList<ParsedToolCall> Calls);

/// <summary>
/// Reads one chat answer as it is generated: a reasoning template's leading <c>&lt;think&gt;</c> block is split off first
/// (<see cref="ReasoningStream"/>), then, for a request with tools, text that may be a call is held back
/// (<see cref="ToolCallStream"/>). Streaming and whole answers go through the same steps, so both read alike.
/// </summary>
public sealed class ChatAnswerStream(bool reasons, IReadOnlySet<string>? tools)
{
    private readonly ReasoningStream? _reasoning = reasons ? new ReasoningStream() : null;
    private readonly ToolCallStream? _calls = tools is null ? null : new ToolCallStream(tools);
    private bool _reasoningStarted;

    /// <summary>The whole answer at once.</summary>
    public static ChatAnswer Read(string text, bool reasons, IReadOnlySet<string>? tools, bool complete)
    {
        var stream = new ChatAnswerStream(reasons, tools);
        var (reasoning, content) = stream.Push(text);
        var end = stream.Finish(complete);
        var all = (reasoning + end.Reasoning).Trim();
        var said = content + end.Content;
        // Beside calls, only the words before them are content (null when there are none), as OpenAI returns it.
        return end.Calls.Count > 0
            ? new ChatAnswer(all.Length == 0 ? null : all, said.Trim(), end.Calls)
            : new ChatAnswer(all.Length == 0 ? null : all, said, []);
    }

    /// <summary>Adds generated text; returns the reasoning and the content that may be sent now (each possibly empty).</summary>
    public (string Reasoning, string Content) Push(string delta)
    {
        var (reasoning, content) = _reasoning is null ? ("", delta) : _reasoning.Push(delta);
        return (Reasoning(reasoning), _calls is null ? content : _calls.Push(content));
    }

    /// <summary>At the end of the answer: what is left to send, and the calls (only read from a complete answer).</summary>
    public ChatAnswer Finish(bool complete)
    {
        var (reasoning, content) = _reasoning is null ? ("", "") : _reasoning.Finish();
        reasoning = Reasoning(reasoning);
        if (_calls is null) return new ChatAnswer(reasoning, content, []);
        var sent = _calls.Push(content);
        var (rest, calls) = _calls.Finish(complete);
        return new ChatAnswer(reasoning, sent + rest, calls);
    }

    /// <summary>Reasoning as sent: the blank lines of an empty block (Qwen3 fine-tunes write one every time) are dropped.</summary>
    private string Reasoning(string reasoning)
    {
        if (_reasoningStarted) return reasoning;
        reasoning = reasoning.TrimStart();
        _reasoningStarted = reasoning.Length > 0;
        return reasoning;
    }
}
