using System.Buffers;
using System.Text.Json;

namespace Gpud.Engine.Data;

/// <summary>The JSONL training formats OpenAI accepts: chat and legacy prompt/completion (supervised), preference pairs (DPO).</summary>
public enum TrainingDataFormat
{
    Chat,
    PromptCompletion,
    Preference,
}

/// <summary>Outcome of inspecting a JSONL training file.</summary>
/// <param name="Error">null if valid; otherwise the first problem, with its 1-based line number.</param>
public sealed record TrainingDataInspection(TrainingDataFormat? Format, int ExampleCount, TrainingDataError? Error)
{
    public bool IsValid => Error is null;
}

/// <summary>A problem in a training file. <see cref="Code"/> uses the OpenAI cookbook's error classes.</summary>
public sealed record TrainingDataError(int Line, string Code, string Message)
{
    public override string ToString() => $"Line {Line}: {Code}: {Message}";
}

/// <summary>
/// Checks a JSONL training file line by line as its bytes stream past, so an upload is validated in the same pass
/// that writes it to disk. Rules follow OpenAI's fine-tuning data-preparation cookbook (chat format) plus the legacy
/// prompt/completion format; the first bad line (1-based) is reported and inspection stops there.
/// </summary>
public sealed class TrainingDataInspector
{
    /// <summary>Longest single line accepted (one example); longer ones are reported, never buffered further.</summary>
    public const int MaxLineBytes = 32 * 1024 * 1024;

    private static readonly HashSet<string> Roles = ["system", "developer", "user", "assistant", "tool", "function"];

    private static readonly HashSet<string> MessageKeys =
        ["role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call", "refusal"];

    private readonly ArrayBufferWriter<byte> _line = new();
    private int _lineNumber;
    private int _examples;
    private bool _overlong;
    private TrainingDataFormat? _format;
    private TrainingDataError? _error;

    /// <summary>Inspects a whole file at once.</summary>
    public static TrainingDataInspection Inspect(ReadOnlySpan<byte> content)
    {
        var inspector = new TrainingDataInspector();
        inspector.Append(content);
        return inspector.Complete();
    }

    public void Append(ReadOnlySpan<byte> chunk)
    {
        if (_error is not null) return;

        while (!chunk.IsEmpty && _error is null)
        {
            var newline = chunk.IndexOf((byte)'\n');
            var piece = newline < 0 ? chunk : chunk[..newline];
            if (!_overlong)
            {
                if (_line.WrittenCount + piece.Length > MaxLineBytes)
                {
                    _overlong = true;
                    _line.Clear();
                }
                else
                {
                    _line.Write(piece);
                }
            }
            if (newline < 0) return;
            EndLine();
            chunk = chunk[(newline + 1)..];
        }
    }

    public TrainingDataInspection Complete()
    {
        if (_error is null && (_line.WrittenCount > 0 || _overlong)) EndLine();
        if (_error is null && _examples == 0)
            _error = new TrainingDataError(Math.Max(_lineNumber, 1), "empty_file", "The file contains no examples.");
        return new TrainingDataInspection(_format, _examples, _error);
    }

    private void EndLine()
    {
        _lineNumber++;
        if (_overlong)
        {
            _error = new TrainingDataError(_lineNumber, "line_too_long", $"The line is longer than {MaxLineBytes} bytes.");
            return;
        }
        var line = _line.WrittenSpan;
        if (!line.IsEmpty && line[^1] == (byte)'\r') line = line[..^1];
        if (_lineNumber == 1 && line.StartsWith("\uFEFF"u8)) line = line[3..]; // UTF-8 BOM from some editors
        if (line.Trim(" \t"u8).IsEmpty)
        {
            _line.Clear();
            return;
        }
        var problem = InspectLine(line, out var format);
        _line.Clear();
        if (problem is not null)
        {
            _error = new TrainingDataError(_lineNumber, problem.Value.Code, problem.Value.Message);
            return;
        }
        if (_format is null)
        {
            _format = format;
        }
        else if (_format != format)
        {
            _error = new TrainingDataError(_lineNumber, "inconsistent_format",
                $"The example is in {Describe(format)} format but earlier ones are in {Describe(_format.Value)} format.");
            return;
        }
        _examples++;
    }

    private static string Describe(TrainingDataFormat format) => format switch
    {
        TrainingDataFormat.Chat => "chat (messages)",
        TrainingDataFormat.PromptCompletion => "prompt/completion",
        _ => "preference (input, preferred_output, non_preferred_output)",
    };

    private static (string Code, string Message)? InspectLine(ReadOnlySpan<byte> line, out TrainingDataFormat format)
    {
        format = TrainingDataFormat.Chat;
        JsonDocument document;
        try
        {
            var reader = new Utf8JsonReader(line, new JsonReaderOptions { MaxDepth = 64 });
            document = JsonDocument.ParseValue(ref reader);
            if (reader.BytesConsumed != line.Length && !line[(int)reader.BytesConsumed..].Trim(" \t"u8).IsEmpty)
                return ("invalid_json", "The line holds more than one JSON value.");
        }
        catch (JsonException e)
        {
            return ("invalid_json", $"The line is not valid JSON ({e.Message.Split(" LineNumber", 2)[0].TrimEnd('.', ' ')}).");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                return ("data_type", "Each line must be a JSON object.");

            if (root.TryGetProperty("input", out _) && !root.TryGetProperty("messages", out _))
            {
                format = TrainingDataFormat.Preference;
                return Preference(root);
            }
            if (!root.TryGetProperty("messages", out var messages))
            {
                if (root.TryGetProperty("prompt", out var prompt) || root.TryGetProperty("completion", out _))
                {
                    format = TrainingDataFormat.PromptCompletion;
                    if (prompt.ValueKind != JsonValueKind.String)
                        return ("invalid_prompt", "'prompt' must be a string.");
                    if (!root.TryGetProperty("completion", out var completion) || completion.ValueKind != JsonValueKind.String)
                        return ("invalid_completion", "'completion' must be a string.");
                    if (completion.GetString()!.Length == 0)
                        return ("invalid_completion", "'completion' is empty: there is nothing to train on.");
                    return null;
                }
                return ("missing_messages_list", "The example has no 'messages' list (or 'prompt' and 'completion', or a preference example's 'input').");
            }

            if (messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
                return ("missing_messages_list", "'messages' must be a non-empty list.");
            if (Tools(root) is { } toolsError) return toolsError;
            if (Messages(messages, "messages", out var hasAssistant) is { } messagesError) return messagesError;
            if (!hasAssistant)
                return ("example_missing_assistant_message", "The example has no assistant message to train on.");
            return null;
        }
    }

    /// <summary>
    /// OpenAI's preference (DPO) example: <c>input</c> holds the conversation so far (and its <c>tools</c>), each output
    /// is a list of exactly one assistant message answering it.
    /// </summary>
    private static (string Code, string Message)? Preference(JsonElement root)
    {
        foreach (var property in root.EnumerateObject())
        {
            if (property.Name is not ("input" or "preferred_output" or "non_preferred_output"))
                return ("unrecognized_key", $"A preference example has only 'input', 'preferred_output' and 'non_preferred_output'; '{property.Name}' is not one of them.");
        }
        var input = root.GetProperty("input");
        if (input.ValueKind != JsonValueKind.Object)
            return ("invalid_input", "'input' must be an object with a 'messages' list.");
        foreach (var property in input.EnumerateObject())
        {
            if (property.Name is not ("messages" or "tools" or "functions" or "parallel_tool_calls"))
                return ("unrecognized_key", $"'input' has an unrecognized key '{property.Name}'.");
        }
        if (!input.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
            return ("missing_messages_list", "'input.messages' must be a non-empty list.");
        if (Tools(input) is { } toolsError) return toolsError;
        if (Messages(messages, "input.messages", out _) is { } messagesError) return messagesError;
        if (messages[messages.GetArrayLength() - 1].GetProperty("role").GetString() == "assistant")
            return ("invalid_input", "'input.messages' ends with an assistant message; the outputs are the assistant's answer to it.");
        foreach (var key in (ReadOnlySpan<string>)["preferred_output", "non_preferred_output"])
        {
            if (!root.TryGetProperty(key, out var output))
                return ($"missing_{key}", $"The example has no '{key}'.");
            if (output.ValueKind != JsonValueKind.Array || output.GetArrayLength() != 1)
                return ($"invalid_{key}", $"'{key}' must be a list of exactly one assistant message.");
            if (Messages(output, key, out _) is { } outputError) return outputError;
            if (output[0].GetProperty("role").GetString() != "assistant")
                return ($"invalid_{key}", $"'{key}' must be a list of exactly one assistant message.");
            if (output[0].TryGetProperty("weight", out _))
                return ("invalid_weight", $"{key}[0]: 'weight' has no meaning in a preference example.");
        }
        return null;
    }

    /// <summary>Checks each message of a list; <paramref name="hasAssistant"/> tells whether any is an assistant's.</summary>
    private static (string Code, string Message)? Messages(JsonElement messages, string path, out bool hasAssistant)
    {
        hasAssistant = false;
        var index = 0;
        foreach (var message in messages.EnumerateArray())
        {
            var where = $"{path}[{index}]";
            index++;
            if (message.ValueKind != JsonValueKind.Object)
                return ("data_type", $"{where} must be an object.");
            foreach (var property in message.EnumerateObject())
            {
                if (!MessageKeys.Contains(property.Name))
                    return ("message_unrecognized_key", $"{where} has an unrecognized key '{property.Name}'.");
            }
            if (!message.TryGetProperty("role", out var role))
                return ("message_missing_key", $"{where} has no 'role'.");
            if (role.ValueKind != JsonValueKind.String || !Roles.Contains(role.GetString()!))
                return ("unrecognized_role", $"{where} has an unrecognized role {role.GetRawText()}.");

            var roleName = role.GetString()!;
            var callsTools = message.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array
                             || message.TryGetProperty("function_call", out var call) && call.ValueKind == JsonValueKind.Object;
            if (message.TryGetProperty("tool_calls", out var toolCalls) && !AreToolCalls(toolCalls))
                return ("invalid_tool_calls", $"{where}: 'tool_calls' must be a list of {{\"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}} with 'arguments' a JSON string.");
            if (message.TryGetProperty("function_call", out var functionCall) && !IsFunctionCall(functionCall))
                return ("invalid_tool_calls", $"{where}: 'function_call' must be {{\"name\", \"arguments\"}} with 'arguments' a JSON string.");
            if (!message.TryGetProperty("content", out var content))
            {
                if (!(roleName == "assistant" && callsTools))
                    return ("message_missing_key", $"{where} has no 'content'.");
            }
            else if (!IsContent(content, allowNull: roleName == "assistant" && callsTools))
            {
                return ("missing_content", $"{where} has empty or non-text 'content'.");
            }

            if (message.TryGetProperty("weight", out var weight))
            {
                if (roleName != "assistant")
                    return ("invalid_weight", $"{where}: 'weight' is only allowed on assistant messages.");
                if (weight.ValueKind != JsonValueKind.Number || !weight.TryGetInt32(out var w) || w is not (0 or 1))
                    return ("invalid_weight", $"{where}: 'weight' must be 0 or 1.");
            }
            if (roleName == "assistant") hasAssistant = true;
        }
        return null;
    }

    /// <summary>An example's function tools (rendered into its prompt by tool-aware templates): <c>tools</c> or legacy <c>functions</c>.</summary>
    private static (string Code, string Message)? Tools(JsonElement root)
    {
        if (root.TryGetProperty("tools", out var tools))
        {
            if (tools.ValueKind != JsonValueKind.Array || !tools.EnumerateArray().All(t =>
                    t.ValueKind == JsonValueKind.Object && t.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String && type.GetString() == "function"
                    && t.TryGetProperty("function", out var function) && IsFunction(function)))
                return ("invalid_tools", "'tools' must be a list of {\"type\": \"function\", \"function\": {\"name\", ...}}.");
        }
        if (root.TryGetProperty("functions", out var functions) && (functions.ValueKind != JsonValueKind.Array || !functions.EnumerateArray().All(IsFunction)))
            return ("invalid_tools", "'functions' must be a list of {\"name\", \"description\", \"parameters\"}.");
        return null;
    }

    private static bool IsFunction(JsonElement function) =>
        function.ValueKind == JsonValueKind.Object && function.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String && name.GetString()!.Length > 0
        && (!function.TryGetProperty("parameters", out var parameters) || parameters.ValueKind is JsonValueKind.Object or JsonValueKind.Null);

    private static bool AreToolCalls(JsonElement calls) =>
        calls.ValueKind == JsonValueKind.Array && calls.EnumerateArray().All(c =>
            c.ValueKind == JsonValueKind.Object && c.TryGetProperty("function", out var function) && IsFunctionCall(function)
            && (!c.TryGetProperty("type", out var type) || type.ValueKind == JsonValueKind.String && type.GetString() == "function"));

    private static bool IsFunctionCall(JsonElement call) =>
        call.ValueKind == JsonValueKind.Object && call.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String && name.GetString()!.Length > 0
        && call.TryGetProperty("arguments", out var arguments) && arguments.ValueKind == JsonValueKind.String;

    private static bool IsContent(JsonElement content, bool allowNull)
    {
        switch (content.ValueKind)
        {
            case JsonValueKind.Null:
                return allowNull;
            case JsonValueKind.String:
                return allowNull || content.GetString()!.Length > 0;
            case JsonValueKind.Array:
                if (content.GetArrayLength() == 0) return false;
                foreach (var part in content.EnumerateArray())
                {
                    if (part.ValueKind != JsonValueKind.Object
                        || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "text"
                        || !part.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                        return false;
                }
                return true;
            default:
                return false;
        }
    }
}
