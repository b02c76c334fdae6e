using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Gpud.Engine.Templates.Jinja;
using Gpud.Engine.Tokenization;

namespace Gpud.Engine.Templates;

/// <summary>A rendered conversation: the prompt text and its token ids.</summary>
public sealed record ChatPrompt(string Text, IReadOnlyList<int> TokenIds);

/// <summary>
/// Turns OpenAI-style messages into prompt token ids with a model's chat template and tokenizer, giving the ids
/// transformers' <c>apply_chat_template(tokenize=True)</c> gives, with one deliberate difference: special-token text
/// inside message content stays text. Before rendering, such text is swapped for private-use stand-ins; after
/// rendering, control tokens are read only from the template's own text and the stand-ins turn back into plain text.
/// </summary>
public sealed class ChatFormatter(TextTokenizer tokenizer, ChatTemplate template)
{
    private const char StandInBase = '\uE000'; // Unicode private use: no tokenizer gives it meaning

    private readonly Regex? _specials = tokenizer.SpecialTokenPattern;
    private IReadOnlyList<int>? _endOfTurn; // found on first use; a race only finds the same token twice

    public ChatTemplate Template => template;

    public ChatPrompt Format(JsonElement messages, bool addGenerationPrompt, IReadOnlyDictionary<string, JsonElement>? variables = null) =>
        Format(messages.EnumerateArray(), addGenerationPrompt, variables);

    /// <summary>Formats a sequence of message objects (e.g. the first n messages of a conversation).</summary>
    /// <param name="variables">Further template variables, e.g. <c>tools</c> (OpenAI's list of function tools, which
    /// tool-aware templates render into the prompt).</param>
    public ChatPrompt Format(IEnumerable<JsonElement> messages, bool addGenerationPrompt, IReadOnlyDictionary<string, JsonElement>? variables = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var originals = new List<string>();
        var values = Neutralize(messages.Select(m => Prepare(JinjaRuntime.FromJson(m))).ToList(), originals);
        var text = template.Render(values, addGenerationPrompt, tokenizer.BosToken, tokenizer.EosToken,
            variables?.ToDictionary(v => v.Key, v => Neutralize(JinjaRuntime.FromJson(v.Value), originals), StringComparer.Ordinal));
        var ids = tokenizer.Encode(text, addSpecialTokens: false, parseSpecialTokens: true, restore: segment => Restore(segment, originals));
        return new ChatPrompt(Restore(text, originals), ids);
    }

    /// <summary>
    /// The special token this template writes right after an assistant message (<c>&lt;|eot_id|&gt;</c>,
    /// <c>&lt;|im_end|&gt;</c>, <c>&lt;/s&gt;</c>…): the token a fine-tune learns to end its answers with, so a chat
    /// answer stops there even when the model's config names only its end-of-text token (as base models' configs do).
    /// Empty when the template writes none.
    /// </summary>
    public IReadOnlyList<int> EndOfTurnTokenIds => _endOfTurn ??= FindEndOfTurn();

    private IReadOnlyList<int> FindEndOfTurn()
    {
        const string answer = "gpud";
        using var conversation = JsonDocument.Parse($$"""[{"role":"user","content":"Hi"},{"role":"assistant","content":"{{answer}}"}]""");
        IReadOnlyList<int> full;
        try
        {
            full = Format(conversation.RootElement, addGenerationPrompt: false).TokenIds;
        }
        catch (TemplateRenderException)
        {
            return []; // a template that refuses this conversation: nothing to learn from it
        }
        // The first special token after the answer's text.
        for (var end = 1; end <= full.Count; end++)
        {
            if (!tokenizer.Decode(full.Take(end), skipSpecialTokens: true).EndsWith(answer, StringComparison.Ordinal)) continue;
            var next = full.Skip(end).FirstOrDefault(tokenizer.IsSpecial, -1);
            return next < 0 ? [] : [next];
        }
        return [];
    }

    /// <summary>
    /// The function tools of a request or training example: its <c>tools</c>, or its legacy <c>functions</c> as tools;
    /// null when it has neither.
    /// </summary>
    public static JsonElement? Tools(JsonElement holder)
    {
        if (holder.ValueKind != JsonValueKind.Object) return null;
        if (holder.TryGetProperty("tools", out var tools) && tools.ValueKind == JsonValueKind.Array) return tools;
        if (!holder.TryGetProperty("functions", out var functions) || functions.ValueKind != JsonValueKind.Array) return null;
        var wrapped = new JsonArray();
        foreach (var function in functions.EnumerateArray())
            wrapped.Add(new JsonObject { ["type"] = "function", ["function"] = JsonNode.Parse(function.GetRawText()) });
        return JsonSerializer.SerializeToElement(wrapped);
    }

    /// <summary>
    /// An OpenAI message as chat templates expect it, prepared as vLLM prepares it: a tool call's <c>arguments</c> JSON
    /// string becomes the object it encodes (templates such as Llama 3.1's and Qwen2.5's write it with <c>tojson</c>);
    /// a legacy <c>function_call</c> becomes a one-call <c>tool_calls</c>, and the legacy role <c>function</c> becomes
    /// <c>tool</c>. A null or absent <c>content</c> (a turn that only calls tools) becomes "", as vLLM passes it.
    /// </summary>
    private static object? Prepare(object? value)
    {
        if (value is not Dictionary<string, object?> message) return value;
        if (!message.TryGetValue("content", out var content) || content is null) message["content"] = "";
        if (message.TryGetValue("role", out var role) && role is "function") message["role"] = "tool";
        if (!message.ContainsKey("tool_calls") && message.TryGetValue("function_call", out var legacy) && legacy is Dictionary<string, object?>)
        {
            message["tool_calls"] = new List<object?> { new Dictionary<string, object?>(StringComparer.Ordinal) { ["type"] = "function", ["function"] = legacy } };
            message.Remove("function_call");
        }
        if (message.TryGetValue("tool_calls", out var calls) && calls is List<object?> list)
        {
            foreach (var call in list)
            {
                if (call is Dictionary<string, object?> c && c.TryGetValue("function", out var f) && f is Dictionary<string, object?> function
                    && function.TryGetValue("arguments", out var arguments) && arguments is string json)
                {
                    try
                    {
                        using var document = JsonDocument.Parse(json);
                        if (document.RootElement.ValueKind == JsonValueKind.Object) function["arguments"] = JinjaRuntime.FromJson(document.RootElement);
                    }
                    catch (JsonException)
                    {
                        // Not JSON: the template gets the string as it was sent.
                    }
                }
            }
        }
        return message;
    }

    /// <summary>Replaces special-token text in every string (message content, names, tool arguments) by stand-ins.</summary>
    private object? Neutralize(object? value, List<string> originals)
    {
        switch (value)
        {
            case string s when _specials is not null && _specials.IsMatch(s):
                return _specials.Replace(s, m =>
                {
                    originals.Add(m.Value);
                    return StandIn(originals.Count - 1);
                });
            case List<object?> list:
                return list.Select(v => Neutralize(v, originals)).ToList();
            case Dictionary<string, object?> map:
                var copy = new Dictionary<string, object?>(StringComparer.Ordinal);
                foreach (var (key, item) in map)
                    copy[key] = key == "content" && item is List<object?> parts ? Neutralize(FlattenText(parts), originals) : Neutralize(item, originals);
                return copy;
            default:
                return value;
        }
    }

    /// <summary>Text-only models get content parts ([{type: text, text}]) joined by newlines, as vLLM does.</summary>
    private static object? FlattenText(List<object?> parts) =>
        parts.All(p => p is Dictionary<string, object?> d && d.TryGetValue("type", out var t) && t is "text" && d.TryGetValue("text", out var x) && x is string)
            ? string.Join("\n", parts.Cast<Dictionary<string, object?>>().Select(p => (string)p["text"]!))
            : parts;

    /// <summary>U+E000, the index as private-use hex digits (U+E010..U+E01F), U+E001: unbounded and never real text.</summary>
    private static string StandIn(int index) =>
        StandInBase + string.Concat(index.ToString("x", System.Globalization.CultureInfo.InvariantCulture).Select(d => (char)(0xE010 + Convert.ToInt32(d.ToString(), 16)))) + '\uE001';

    private static readonly Regex StandIns = new("\uE000([\uE010-\uE01F]+)\uE001", RegexOptions.CultureInvariant);

    /// <summary>Puts the original text back in one pass over <paramref name="text"/>.</summary>
    private static string Restore(string text, List<string> originals)
    {
        if (originals.Count == 0 || !text.Contains(StandInBase, StringComparison.Ordinal)) return text;
        return StandIns.Replace(text, m =>
        {
            var index = m.Groups[1].Value.Aggregate(0, (n, c) => n * 16 + (c - 0xE010));
            return index < originals.Count ? originals[index] : m.Value;
        });
    }
}
