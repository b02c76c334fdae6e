using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Services.Errors;
using static Gpud.Services.Errors.RequestFields;

namespace Gpud.Services.Responses;

/// <summary>
/// A <c>/v1/responses</c> request (OpenAI's Responses API) read as the chat completion it asks for: the items of the
/// responses it continues (<c>previous_response_id</c>), <c>instructions</c> and the <c>input</c> items become messages
/// (function calls and their outputs included), function <c>tools</c> take the chat form, <c>text.format</c> becomes
/// <c>response_format</c>, <c>max_output_tokens</c> the completion budget. What gpud does not do is refused by name.
/// </summary>
/// <param name="Chat">The equivalent <c>/v1/chat/completions</c> body.</param>
/// <param name="Input">This request's input items, each with an id, as the response stores them.</param>
/// <param name="Echo">What the response object repeats of the request (instructions, tools, text, …), as sent.</param>
/// <param name="Background">Answered after the request returns (status <c>queued</c>), fetched by id once done.</param>
public sealed record ResponseRequest(JsonElement Chat, JsonArray Input, ResponseEcho Echo, bool Stream, bool Store, bool Background = false)
{
    private static readonly (string From, string To)[] Renamed =
        [("max_output_tokens", "max_completion_tokens"), ("temperature", "temperature"), ("top_p", "top_p"), ("parallel_tool_calls", "parallel_tool_calls"), ("user", "user")];

    private static readonly string[] Refused = ["reasoning", "prompt", "max_tool_calls", "top_logprobs"];
    private static readonly string[] Strings = ["instructions", "user", "service_tier", "prompt_cache_key", "safety_identifier"];

    private static readonly HashSet<string> Fields =
    [
        "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "stream", "stream_options", "text", "tools",
        "tool_choice", "parallel_tool_calls", "store", "metadata", "user", "previous_response_id", "conversation", "reasoning",
        "include", "truncation", "service_tier", "background", "prompt", "prompt_cache_key", "safety_identifier", "max_tool_calls",
        "top_logprobs",
    ];

    /// <param name="history">The items of a stored response's conversation, its own output included.</param>
    public static ResponseRequest Parse(JsonElement body, Func<string, IReadOnlyList<JsonElement>> history)
    {
        ArgumentNullException.ThrowIfNull(history);
        var fields = Known(body, Fields);
        JsonElement? Field(string name) => fields.TryGetValue(name, out var v) ? v : null;

        if (Field("conversation") is not null)
            throw Unsupported("conversation", "Conversation objects are not supported by gpud: continue a stored response with 'previous_response_id'.");
        var store = Field("store") is not { } storeField || Boolean(storeField, "store"); // stored unless told not to, as OpenAI does
        string? previous = null;
        if (Field("previous_response_id") is { } previousField)
            previous = previousField.ValueKind == JsonValueKind.String ? previousField.GetString() : throw Invalid("previous_response_id", "must be a string", "invalid_type");
        var background = Field("background") is { } backgroundField && Boolean(backgroundField, "background");
        if (background && !store)
            throw GpudException.Invalid("A background response must be stored (it is fetched by id once done): leave 'store' out or set it to true.", "store");
        foreach (var name in Refused.Where(fields.ContainsKey))
            throw Unsupported(name, $"'{name}' is not supported by gpud's Responses API.");
        if (Field("include") is { } include && !(include.ValueKind == JsonValueKind.Array && include.GetArrayLength() == 0))
            throw Unsupported("include", "'include' is not supported by gpud: its responses carry no extra data to include.");
        if (Field("truncation") is { } truncation && !(truncation.ValueKind == JsonValueKind.String && truncation.GetString() == "disabled"))
            throw Unsupported("truncation", "Only truncation 'disabled' is supported: gpud refuses a conversation longer than the context rather than cutting it.");
        if (Field("metadata") is { } metadata && (metadata.ValueKind != JsonValueKind.Object || metadata.EnumerateObject().Any(p => p.Value.ValueKind != JsonValueKind.String)))
            throw Invalid("metadata", "must be an object of string values", "invalid_type");
        foreach (var name in Strings)
        {
            if (Field(name) is { } value && value.ValueKind != JsonValueKind.String) throw Invalid(name, "must be a string", "invalid_type");
        }

        var chat = new JsonObject();
        if (Field("model") is { } model) chat["model"] = JsonNode.Parse(model.GetRawText());
        var messages = new JsonArray();
        if (Field("instructions") is { } instructions) messages.Add(new JsonObject { ["role"] = "system", ["content"] = instructions.GetString() });
        if (Field("input") is not { } input) throw GpudException.Invalid("You must provide 'input'.", "input");
        var items = Items(input);
        var earlier = previous is null ? [] : history(previous).Select(item => (item, "previous_response_id"));
        Messages(earlier.Concat(items.Select((item, i) => (item, $"input[{i}]"))), messages);
        chat["messages"] = messages;
        foreach (var (from, to) in Renamed)
        {
            if (Field(from) is { } value) chat[to] = JsonNode.Parse(value.GetRawText());
        }
        if (Field("tools") is { } tools) chat["tools"] = Tools(tools);
        if (Field("tool_choice") is { } choice) chat["tool_choice"] = ToolChoice(choice);
        if (Field("text") is { } textField) Text(textField, chat);
        var stream = Field("stream") is { } streamField && Boolean(streamField, "stream");
        if (Field("stream_options") is { } options && !stream)
            throw GpudException.Invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options");
        if (background && stream)
            throw Unsupported("stream", "gpud does not stream background responses: poll GET /v1/responses/{id} until its status is final.");

        var echo = new ResponseEcho(Field("instructions")?.GetString(), Field("max_output_tokens"), Field("temperature"), Field("top_p"),
            Field("tools"), Field("tool_choice"), Field("parallel_tool_calls") is not { } p || Boolean(p, "parallel_tool_calls"), Field("text"),
            Field("metadata"), Field("user")?.GetString(), previous);
        var stored = new JsonArray([.. items.Select(i => (JsonNode)WithId(i))]);
        return new ResponseRequest(JsonSerializer.SerializeToElement(chat), stored, echo, stream, store, background);
    }

    /// <summary>
    /// The chat request's field names in an error become the Responses API's: the client sent <c>input</c>, not
    /// <c>messages</c>.
    /// </summary>
    public static GpudException Translate(GpudException e)
    {
        ArgumentNullException.ThrowIfNull(e);
        string? Rename(string? param) => param switch
        {
            null => null,
            "max_completion_tokens" => "max_output_tokens",
            "tool_choice.function.name" => "tool_choice.name",
            _ when param.StartsWith("messages", StringComparison.Ordinal) => "input",
            _ when param.StartsWith("response_format", StringComparison.Ordinal) => "text.format",
            _ when param.StartsWith("tools[", StringComparison.Ordinal) => param.Replace(".function.", ".", StringComparison.Ordinal),
            _ => param,
        };
        var message = e.Message.Replace("max_completion_tokens", "max_output_tokens", StringComparison.Ordinal)
            .Replace("response_format", "text.format", StringComparison.Ordinal)
            .Replace("in the messages", "in the input", StringComparison.Ordinal).Replace("length of the messages", "length of the input", StringComparison.Ordinal);
        return new GpudException(e.Kind, message, Rename(e.Param), e.Code);
    }

    /// <summary>The input as items: a string is one user message.</summary>
    private static List<JsonElement> Items(JsonElement input)
    {
        if (input.ValueKind == JsonValueKind.String)
            return [JsonSerializer.SerializeToElement(new { type = "message", role = "user", content = new[] { new { type = "input_text", text = input.GetString() } } })];
        if (input.ValueKind != JsonValueKind.Array || input.GetArrayLength() == 0)
            throw GpudException.Invalid("'input' must be a string or a non-empty array of input items.", "input");
        return [.. input.EnumerateArray()];
    }

    /// <summary>
    /// An input item as stored and listed, in the API's full form: with an id (<c>msg_…</c> for a message) if it came
    /// without one, a <c>type</c>, and a message's text as a list of content parts.
    /// </summary>
    private static JsonObject WithId(JsonElement item)
    {
        var given = JsonNode.Parse(item.GetRawText())!.AsObject();
        var type = (string?)given["type"] ?? "message";
        var stored = new JsonObject
        {
            ["id"] = given["id"]?.DeepClone() ?? Ids.ResourceId.New(type switch { "function_call" => "fc_", "function_call_output" => "fco_", "reasoning" => "rs_", _ => "msg_" }),
            ["type"] = type,
        };
        foreach (var (name, value) in given.Where(p => p.Key is not ("id" or "type")))
        {
            stored[name] = type == "message" && name == "content" && value is JsonValue text
                ? new JsonArray(new JsonObject { ["type"] = (string?)given["role"] == "assistant" ? "output_text" : "input_text", ["text"] = text.DeepClone() })
                : value?.DeepClone();
        }
        return stored;
    }

    /// <summary>Messages, function calls and their outputs, in order, as chat messages.</summary>
    private static void Messages(IEnumerable<(JsonElement Item, string At)> items, JsonArray messages)
    {
        foreach (var (item, at) in items)
        {
            if (item.ValueKind != JsonValueKind.Object) throw Invalid(at, "must be an object", "invalid_type");
            var type = item.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : item.TryGetProperty("role", out _) ? "message" : null;
            switch (type)
            {
                case "message":
                    var role = item.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString() : null;
                    if (role is not ("user" or "assistant" or "system" or "developer"))
                        throw GpudException.Invalid($"Invalid value for '{at}.role': it must be one of 'user', 'assistant', 'system', 'developer'.", $"{at}.role");
                    messages.Add(new JsonObject { ["role"] = role == "developer" ? "system" : role, ["content"] = Content(item, at, role) });
                    break;
                case "function_call":
                    var call = new JsonObject
                    {
                        ["id"] = Required(item, "call_id", at),
                        ["type"] = "function",
                        ["function"] = new JsonObject { ["name"] = Required(item, "name", at), ["arguments"] = Required(item, "arguments", at) },
                    };
                    // Calls that follow an assistant message (or each other) belong to it, as a chat turn holds them.
                    if (messages.Count > 0 && messages[^1] is JsonObject { } last && (string?)last["role"] == "assistant")
                        ((last["tool_calls"] ??= new JsonArray()) as JsonArray)!.Add(call);
                    else messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = null, ["tool_calls"] = new JsonArray(call) });
                    break;
                case "function_call_output":
                    if (!item.TryGetProperty("output", out var output)) throw GpudException.Invalid($"'{at}.output' is required.", $"{at}.output");
                    messages.Add(new JsonObject
                    {
                        ["role"] = "tool",
                        ["tool_call_id"] = Required(item, "call_id", at),
                        ["content"] = output.ValueKind == JsonValueKind.String ? output.GetString() : Parts(output, $"{at}.output", "input_text"),
                    });
                    break;
                case "reasoning":
                    break; // a reasoning model's earlier thinking: chat templates leave past reasoning out of the prompt
                default:
                    throw GpudException.Invalid($"Invalid '{at}.type': gpud takes input items of type 'message', 'function_call', 'function_call_output' and 'reasoning'.", $"{at}.type");
            }
        }
    }

    private static string Content(JsonElement item, string at, string role)
    {
        if (!item.TryGetProperty("content", out var content)) throw GpudException.Invalid($"'{at}.content' is required.", $"{at}.content");
        return content.ValueKind == JsonValueKind.String ? content.GetString()! : Parts(content, $"{at}.content", role == "assistant" ? "output_text" : "input_text");
    }

    /// <summary>The text of a list of content parts; gpud's models read text only.</summary>
    private static string Parts(JsonElement parts, string at, string textType)
    {
        if (parts.ValueKind != JsonValueKind.Array) throw Invalid(at, "must be a string or an array of content parts", "invalid_type");
        var text = new System.Text.StringBuilder();
        foreach (var (part, j) in parts.EnumerateArray().Select((p, j) => (p, j)))
        {
            var type = part.ValueKind == JsonValueKind.Object && part.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            if (type is not ("input_text" or "output_text" or "text") || !part.TryGetProperty("text", out var value) || value.ValueKind != JsonValueKind.String)
            {
                throw GpudException.Invalid(type is "input_image" or "input_file" or "input_audio"
                    ? $"'{at}[{j}]' is of type '{type}': gpud's models read text only."
                    : $"Invalid '{at}[{j}]': a content part must be {{\"type\": \"{textType}\", \"text\": \"…\"}}.", $"{at}[{j}]", type is "input_image" or "input_file" or "input_audio" ? "unsupported_parameter" : null);
            }
            text.Append(value.GetString());
        }
        return text.ToString();
    }

    private static string Required(JsonElement item, string name, string at) =>
        item.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && v.GetString()!.Length > 0
            ? v.GetString()!
            : throw GpudException.Invalid($"'{at}.{name}' must be a non-empty string.", $"{at}.{name}");

    /// <summary>Function tools, flat in the Responses API (<c>{"type", "name", "parameters"}</c>), nested in chat.</summary>
    private static JsonArray Tools(JsonElement tools)
    {
        if (tools.ValueKind != JsonValueKind.Array) throw Invalid("tools", "must be an array", "invalid_type");
        var chat = new JsonArray();
        foreach (var (tool, i) in tools.EnumerateArray().Select((t, i) => (t, i)))
        {
            var type = tool.ValueKind == JsonValueKind.Object && tool.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString() : null;
            if (type != "function")
                throw GpudException.Invalid($"Invalid 'tools[{i}]': gpud supports tools of type 'function' (its models call your functions; it runs no hosted tools).", $"tools[{i}].type");
            var function = new JsonObject();
            foreach (var property in tool.EnumerateObject().Where(p => p.Name != "type"))
                function[property.Name] = JsonNode.Parse(property.Value.GetRawText());
            chat.Add(new JsonObject { ["type"] = "function", ["function"] = function });
        }
        return chat;
    }

    private static JsonNode? ToolChoice(JsonElement choice)
    {
        if (choice.ValueKind == JsonValueKind.String) return choice.GetString();
        if (choice.ValueKind == JsonValueKind.Object && choice.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String && type.GetString() == "function")
        {
            if (!choice.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
                throw GpudException.Invalid("'tool_choice.name' must name one of the tools.", "tool_choice.name");
            return new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = name.GetString() } };
        }
        throw GpudException.Invalid("Invalid 'tool_choice': gpud takes 'none', 'auto', 'required' or {\"type\": \"function\", \"name\": …}.", "tool_choice");
    }

    /// <summary><c>text.format</c> (text, json_object, or json_schema with its fields beside <c>type</c>) as response_format.</summary>
    private static void Text(JsonElement text, JsonObject chat)
    {
        if (text.ValueKind != JsonValueKind.Object) throw Invalid("text", "must be an object", "invalid_type");
        foreach (var property in text.EnumerateObject())
        {
            if (property.Name is not ("format" or "verbosity"))
                throw GpudException.Invalid($"Unrecognized argument 'text.{property.Name}'.", $"text.{property.Name}", "unknown_parameter");
        }
        if (text.TryGetProperty("verbosity", out var verbosity) && verbosity.ValueKind != JsonValueKind.Null)
            throw Unsupported("text.verbosity", "'text.verbosity' is not supported by gpud: say in the input how long an answer you want.");
        if (!text.TryGetProperty("format", out var format) || format.ValueKind == JsonValueKind.Null) return;
        if (format.ValueKind != JsonValueKind.Object || !format.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw GpudException.Invalid("Invalid 'text.format': it must be an object with a 'type'.", "text.format.type");
        if (type.GetString() != "json_schema")
        {
            chat["response_format"] = JsonNode.Parse(format.GetRawText());
            return;
        }
        var schema = new JsonObject();
        foreach (var property in format.EnumerateObject().Where(p => p.Name != "type"))
            schema[property.Name] = JsonNode.Parse(property.Value.GetRawText());
        chat["response_format"] = new JsonObject { ["type"] = "json_schema", ["json_schema"] = schema };
    }

    private static GpudException Unsupported(string param, string message) => GpudException.Invalid(message, param, "unsupported_parameter");
}

/// <summary>The request fields a Responses API response object repeats, as the client sent them (null: not sent).</summary>
public sealed record ResponseEcho(
    string? Instructions,
    JsonElement? MaxOutputTokens,
    JsonElement? Temperature,
    JsonElement? TopP,
    JsonElement? Tools,
    JsonElement? ToolChoice,
    bool ParallelToolCalls,
    JsonElement? Text,
    JsonElement? Metadata,
    string? User,
    string? PreviousResponseId);
