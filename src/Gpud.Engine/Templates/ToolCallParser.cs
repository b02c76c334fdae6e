using System.Text;
using System.Text.Json;

namespace Gpud.Engine.Templates;

/// <summary>A function call read from a model's output: its name and its arguments as JSON text.</summary>
public sealed record ParsedToolCall(string Name, string Arguments);

/// <summary>What a model answered when it could call tools: text before any call, and the calls (empty if none).</summary>
public sealed record ToolCallOutput(string? Content, IReadOnlyList<ParsedToolCall> Calls);

/// <summary>
/// Reads function calls out of generated text in the forms open models are trained to write them (and gpud's fine-tunes
/// learn from their chat templates): Hermes/Qwen's <c>&lt;tool_call&gt;{"name": …, "arguments": {…}}&lt;/tool_call&gt;</c>
/// blocks after optional text, and a bare JSON call, list of calls, or calls separated by ';' — Llama 3.1/3.2 write
/// <c>{"name": …, "parameters": {…}}</c>, Mistral a list after its (special, hence skipped) <c>[TOOL_CALLS]</c> token.
/// A call counts only if it names one of the request's tools; otherwise the output is plain content, as it would be
/// for a model that answered in JSON.
/// </summary>
public static class ToolCallParser
{
    private const string HermesOpen = "<tool_call>";
    private const string HermesClose = "</tool_call>";
    private static readonly string[] Prefixes = ["<|python_tag|>", "[TOOL_CALLS]"];

    /// <returns>The calls and the text before them, or null when <paramref name="text"/> holds no valid call.</returns>
    public static ToolCallOutput? Parse(string text, IReadOnlySet<string> tools)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(tools);
        var open = text.IndexOf(HermesOpen, StringComparison.Ordinal);
        if (open >= 0)
        {
            var calls = new List<ParsedToolCall>();
            var at = open;
            while (at >= 0)
            {
                var start = at + HermesOpen.Length;
                var close = text.IndexOf(HermesClose, start, StringComparison.Ordinal);
                var body = close < 0 ? text[start..] : text[start..close]; // an unclosed last block still counts
                if (Calls(body, tools) is not { Count: > 0 } found) return null;
                calls.AddRange(found);
                at = close < 0 ? -1 : text.IndexOf(HermesOpen, close + HermesClose.Length, StringComparison.Ordinal);
            }
            var before = text[..open].Trim();
            return new ToolCallOutput(before.Length == 0 ? null : before, calls);
        }

        var trimmed = text.Trim();
        foreach (var prefix in Prefixes)
        {
            if (trimmed.StartsWith(prefix, StringComparison.Ordinal)) trimmed = trimmed[prefix.Length..].TrimStart();
        }
        return trimmed.Length > 0 && trimmed[0] is '{' or '[' && Calls(trimmed, tools) is { Count: > 0 } bare ? new ToolCallOutput(null, bare) : null;
    }

    /// <summary>
    /// Where streamed content must stop being sent because a call may be starting: at a <c>&lt;tool_call&gt;</c> marker or
    /// a trailing prefix of one, or at 0 while the output so far is blank or begins with JSON. Null: all of it may go.
    /// </summary>
    public static int? HoldFrom(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var first = 0;
        while (first < text.Length && char.IsWhiteSpace(text[first])) first++;
        if (first == text.Length) return 0;
        if (text[first] is '{' or '[' || Prefixes.Any(p => text.AsSpan(first).StartsWith(p.AsSpan(0, Math.Min(p.Length, text.Length - first)), StringComparison.Ordinal)))
            return 0;
        var open = text.IndexOf(HermesOpen, StringComparison.Ordinal);
        if (open >= 0) return open;
        for (var length = Math.Min(HermesOpen.Length - 1, text.Length); length > 0; length--)
        {
            if (text.AsSpan(text.Length - length).SequenceEqual(HermesOpen.AsSpan(0, length))) return text.Length - length;
        }
        return null;
    }

    /// <summary>One or more JSON calls, separated by whitespace, ',' or ';', or as one list; null if anything else is there.</summary>
    private static List<ParsedToolCall>? Calls(string json, IReadOnlySet<string> tools)
    {
        var calls = new List<ParsedToolCall>();
        var bytes = Encoding.UTF8.GetBytes(json);
        var position = 0;
        while (true)
        {
            while (position < bytes.Length && (bytes[position] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t' or (byte)';' or (byte)',')) position++;
            if (position == bytes.Length) return calls;
            JsonElement value;
            try
            {
                var reader = new Utf8JsonReader(bytes.AsSpan(position), new JsonReaderOptions { AllowMultipleValues = true });
                using var document = JsonDocument.ParseValue(ref reader);
                value = document.RootElement.Clone();
                position += (int)reader.BytesConsumed;
            }
            catch (JsonException)
            {
                return null;
            }
            if (value.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in value.EnumerateArray())
                {
                    if (Call(item, tools) is not { } call) return null;
                    calls.Add(call);
                }
            }
            else if (Call(value, tools) is { } call)
            {
                calls.Add(call);
            }
            else
            {
                return null;
            }
        }
    }

    private static ParsedToolCall? Call(JsonElement value, IReadOnlySet<string> tools)
    {
        if (value.ValueKind != JsonValueKind.Object) return null;
        if (value.TryGetProperty("function", out var nested) && nested.ValueKind == JsonValueKind.Object) value = nested;
        if (!value.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || !tools.Contains(name.GetString()!)) return null;
        if (!value.TryGetProperty("arguments", out var arguments) && !value.TryGetProperty("parameters", out arguments))
            return new ParsedToolCall(name.GetString()!, "{}");
        return arguments.ValueKind switch
        {
            JsonValueKind.Object => new ParsedToolCall(name.GetString()!, arguments.GetRawText()),
            JsonValueKind.String => new ParsedToolCall(name.GetString()!, arguments.GetString()!),
            _ => null,
        };
    }
}
