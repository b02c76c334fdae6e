using System.Globalization;
using System.Text.Json;
using Gpud.Engine.Generation;
using Gpud.Engine.Generation.Constraints;
using Gpud.Engine.Templates;
using Gpud.Services.Errors;
using static Gpud.Services.Errors.RequestFields;

namespace Gpud.Services.Inference;

/// <summary>Which OpenAI endpoint a request came through.</summary>
public enum TextGenerationKind
{
    Completion,
    Chat,
}

/// <summary>
/// A validated <c>/v1/completions</c> or <c>/v1/chat/completions</c> request, resolved against its model: prompts as
/// tokens, one <see cref="SamplingParameters"/> per choice (seed + choice index when a seed is given, so a streamed
/// and a non-streamed request with the same seed produce the same text), and what the response must show.
/// </summary>
/// <param name="Tools">The function names a chat answer may call (its output is then read for calls), or null.</param>
/// <param name="ParallelToolCalls">False: an answer makes at most one call (the first it writes).</param>
public sealed record TextGenerationRequest(
    TextGenerationKind Kind,
    ServedModel Model,
    IReadOnlyList<GenerationInput> Inputs,
    IReadOnlyList<string> PromptTexts,
    int N,
    int BestOf,
    bool Echo,
    int? Logprobs,
    bool Stream,
    bool IncludeUsage,
    IReadOnlySet<string>? Tools = null,
    bool ParallelToolCalls = true)
{
    /// <summary>Chat: <c>store</c> — the completion is kept, to be listed, retrieved and deleted (stored chat completions).</summary>
    public bool Store { get; init; }

    /// <summary>Chat: <c>metadata</c> of a stored completion (validated either way; kept only with <see cref="Store"/>).</summary>
    public IReadOnlyDictionary<string, string>? Metadata { get; init; }

    private static readonly HashSet<string> CompletionFields =
    [
        "model", "prompt", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "logprobs", "echo", "stop",
        "presence_penalty", "frequency_penalty", "best_of", "logit_bias", "seed", "suffix", "user", "top_k", "response_format",
    ];

    private static readonly HashSet<string> ChatFields =
    [
        "model", "messages", "max_completion_tokens", "max_tokens", "temperature", "top_p", "n", "stream", "stream_options", "stop",
        "presence_penalty", "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "seed", "user", "top_k", "store",
        "metadata", "service_tier", "tools", "tool_choice", "functions", "function_call", "parallel_tool_calls", "response_format",
        "audio", "modalities", "prediction", "reasoning_effort", "web_search_options",
    ];

    /// <summary>Fields of the contract gpud does not implement: a 400 naming the field, never silently ignored.</summary>
    private static readonly HashSet<string> Unsupported =
        ["functions", "function_call", "audio", "prediction", "reasoning_effort", "web_search_options"];

    public static TextGenerationRequest Parse(TextGenerationKind kind, JsonElement body, Func<string, ServedModel> resolve, InferenceService inference)
    {
        ArgumentNullException.ThrowIfNull(resolve);
        ArgumentNullException.ThrowIfNull(inference);
        var chat = kind == TextGenerationKind.Chat;
        var fields = Known(body, chat ? ChatFields : CompletionFields);
        JsonElement? Field(string name) => fields.TryGetValue(name, out var v) ? v : null;

        foreach (var name in Unsupported.Where(fields.ContainsKey))
        {
            throw GpudException.Invalid(name is "functions" or "function_call"
                ? $"'{name}' is deprecated and not supported by gpud: use 'tools' and 'tool_choice'."
                : $"'{name}' is not supported by gpud: its models answer with text only.", name, "unsupported_parameter");
        }
        var format = OutputFormat.Parse(Field("response_format"));
        if (Field("modalities") is { } modalities && !(modalities.ValueKind == JsonValueKind.Array && modalities.EnumerateArray().All(m => m.ValueKind == JsonValueKind.String && m.GetString() == "text")))
            throw GpudException.Invalid("Only the 'text' modality is supported.", "modalities", "unsupported_parameter");

        if (Field("model") is not { ValueKind: JsonValueKind.String } modelField || modelField.GetString() is not { Length: > 0 } modelName)
            throw GpudException.Invalid("You must provide a model parameter.", "model");
        var model = resolve(modelName);
        var tokenizer = model.Base.Tokenizer;
        var vocab = model.Base.Config.VocabSize;
        var context = inference.ContextLength(model.Base);

        var n = Field("n") is { } nField ? Integer(nField, "n", 1, 128) : 1;
        var stream = Field("stream") is { } streamField && Boolean(streamField, "stream");
        var includeUsage = false;
        if (Field("stream_options") is { } options)
        {
            if (!stream) throw GpudException.Invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options");
            if (options.ValueKind != JsonValueKind.Object) throw Invalid("stream_options", "must be an object", "invalid_type");
            includeUsage = options.TryGetProperty("include_usage", out var usage) && usage.ValueKind != JsonValueKind.Null && Boolean(usage, "stream_options.include_usage");
        }
        var bestOf = chat ? n : Field("best_of") is { } bestField ? Integer(bestField, "best_of", 1, 128) : n;
        if (bestOf < n) throw GpudException.Invalid($"best_of must be greater than or equal to n (got best_of={bestOf}, n={n}).", "best_of");
        if (stream && bestOf > n) throw GpudException.Invalid("Cannot stream results with best_of greater than n.", "best_of");
        var rows = inference.Settings.MaxBatchSize;
        if (bestOf > rows) throw GpudException.Invalid($"{(bestOf > n ? "best_of" : "n")} must be at most {rows} here (Gpud:Inference:MaxBatchSize).", bestOf > n ? "best_of" : "n");

        int? logprobs;
        if (chat)
        {
            var wanted = Field("logprobs") is { } lp && Boolean(lp, "logprobs");
            var top = Field("top_logprobs") is { } tl ? Integer(tl, "top_logprobs", 0, 20) : (int?)null;
            if (top is not null && !wanted) throw GpudException.Invalid("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs");
            logprobs = wanted ? top ?? 0 : null;
        }
        else
        {
            logprobs = Field("logprobs") is { } lp ? Integer(lp, "logprobs", 0, 5) : null;
        }
        var echo = !chat && Field("echo") is { } echoField && Boolean(echoField, "echo");
        if (!chat && Field("suffix") is { } suffix)
        {
            if (suffix.ValueKind != JsonValueKind.String) throw Invalid("suffix", "must be a string", "invalid_type");
            if (suffix.GetString()!.Length > 0)
                throw GpudException.Invalid($"The model '{modelName}' does not support 'suffix' (it has no fill-in-the-middle training).", "suffix", "unsupported_parameter");
        }
        if (Field("user") is { } user && user.ValueKind != JsonValueKind.String) throw Invalid("user", "must be a string", "invalid_type");

        var temperature = Field("temperature") is { } temp ? Number(temp, "temperature", 0, 2) : 1.0;
        var topP = Field("top_p") is { } tp ? Number(tp, "top_p", 0, 1, exclusiveMin: true) : 1.0;
        var topK = Field("top_k") is { } tk ? Integer(tk, "top_k", -1, vocab) : 0;
        var presence = Field("presence_penalty") is { } pp ? Number(pp, "presence_penalty", -2, 2) : 0;
        var frequency = Field("frequency_penalty") is { } fp ? Number(fp, "frequency_penalty", -2, 2) : 0;
        long? seed = null;
        if (Field("seed") is { } seedField)
            seed = seedField.ValueKind == JsonValueKind.Number && seedField.TryGetInt64(out var s) ? s : throw Invalid("seed", "must be an integer", "invalid_type");
        var stops = Stops(Field("stop"));
        var bias = LogitBias(Field("logit_bias"), vocab);

        // Prompts.
        var prompts = new List<(IReadOnlyList<int> Tokens, string Text)>();
        IReadOnlySet<string>? tools = null;
        ToolChoice? toolChoice = null;
        var parallel = true;
        if (chat)
        {
            if (Field("messages") is not { ValueKind: JsonValueKind.Array } messages || messages.GetArrayLength() == 0)
                throw GpudException.Invalid("'messages' must be a non-empty array of message objects.", "messages");
            foreach (var (message, i) in messages.EnumerateArray().Select((m, i) => (m, i)))
            {
                if (message.ValueKind != JsonValueKind.Object || !message.TryGetProperty("role", out var role) || role.ValueKind != JsonValueKind.String)
                    throw GpudException.Invalid($"messages[{i}] must be an object with a string 'role'.", $"messages[{i}].role");
                if (role.GetString() is not ("system" or "developer" or "user" or "assistant" or "tool"))
                    throw GpudException.Invalid($"Invalid value for 'messages[{i}].role': '{role.GetString()}' is not one of system, developer, user, assistant, tool.", $"messages[{i}].role");
            }
            toolChoice = CallableTools(Field("tools"), Field("tool_choice"));
            tools = toolChoice?.Callable;
            if (Field("parallel_tool_calls") is { } parallelField) parallel = Boolean(parallelField, "parallel_tool_calls");
            ChatPrompt rendered;
            try
            {
                // The schemas go to the template (tool-aware templates write them into the prompt) unless the client
                // ruled calls out with tool_choice "none".
                rendered = model.Base.Chat().Format(messages, addGenerationPrompt: true,
                    tools is not null ? new Dictionary<string, JsonElement> { ["tools"] = Field("tools")!.Value } : null);
            }
            catch (TemplateRenderException e)
            {
                throw GpudException.Invalid($"The messages do not fit the chat template of '{model.Base.Name}': {e.Message}", "messages");
            }
            prompts.Add((rendered.TokenIds, rendered.Text));
        }
        else
        {
            prompts.AddRange(Prompts(Field("prompt"), tokenizer, vocab));
        }

        var maxField = chat ? Field("max_completion_tokens") ?? Field("max_tokens") : Field("max_tokens");
        var maxParam = chat && Field("max_completion_tokens") is not null ? "max_completion_tokens" : "max_tokens";
        int? maxTokens = maxField is { } mf ? Integer(mf, maxParam, 1, int.MaxValue) : chat ? null : 16;
        // A chat answer also ends at the template's end-of-turn token, which training teaches (see ChatFormatter).
        var stopTokens = model.Base.Config.EosTokenIds.Concat(tokenizer.EosTokenId is { } eos ? [eos] : [])
            .Concat(chat ? model.Base.Chat().EndOfTurnTokenIds : []).Distinct().ToArray();
        // Built here, on the request's thread: the constraint factory runs on the device's batcher thread, where the first
        // JSON request would otherwise stall every running sequence while the vocabulary trie is built.
        // A forced call is the answer, so it takes the place of response_format (which shapes content, and there is none).
        var constraint = toolChoice?.Forced is { } forced
            ? ForcedCall(model.Base.StructuredOutput, forced, parallel: parallel && !toolChoice.Named)
            : format.Constraint(model.Base.StructuredOutput);
        var inputs = new List<GenerationInput>();
        foreach (var (tokens, _) in prompts)
        {
            var budget = maxTokens ?? context - tokens.Count;
            if (tokens.Count + budget > context || budget < 1)
            {
                throw GpudException.Invalid(
                    $"This model's maximum context length is {context} tokens. However, you requested {tokens.Count + (maxTokens ?? 1)} tokens " +
                    $"({tokens.Count} in the {(chat ? "messages" : "prompt")}, {maxTokens ?? 1} for the completion). Please reduce the length of the {(chat ? "messages" : "prompt")} or {maxParam}.",
                    maxParam, "context_length_exceeded");
            }
            var choices = Enumerable.Range(0, bestOf).Select(c => new SamplingParameters(
                budget, temperature, topP, Math.Max(topK, 0), seed is { } x ? unchecked(x + c) : null, stopTokens,
                TopLogprobs: logprobs ?? (bestOf > n ? 0 : null), PresencePenalty: presence, FrequencyPenalty: frequency, LogitBias: bias,
                Constraint: constraint)).ToList();
            inputs.Add(new GenerationInput(tokens, choices, stops, echo && logprobs is { } k ? k : null));
        }
        return new TextGenerationRequest(kind, model, inputs, prompts.Select(p => p.Text).ToList(), n, bestOf, echo, logprobs, stream, includeUsage, tools, parallel)
        {
            Store = Field("store") is { } storeField && Boolean(storeField, "store"),
            Metadata = Field("metadata") is { } metadataField ? RequestFields.Metadata(metadataField) : null,
        };
    }

    /// <summary>
    /// The function tools the answer may call, or null when it may call none (no tools, or tool_choice "none"). With
    /// "required" or a named function the call is forced as vLLM forces it: decoding is constrained to
    /// <c>{"name", "arguments"}</c> JSON for those tools (<see cref="JsonSchema.ToolCalls"/>), each call's arguments an
    /// instance of its parameters schema, which the tool-call reader then returns as <c>tool_calls</c>.
    /// </summary>
    private static ToolChoice? CallableTools(JsonElement? tools, JsonElement? choice)
    {
        if (tools is not { } list)
        {
            if (choice is not null) throw GpudException.Invalid("'tool_choice' is only allowed when 'tools' are specified.", "tool_choice");
            return null;
        }
        if (list.ValueKind != JsonValueKind.Array) throw Invalid("tools", "must be an array", "invalid_type");
        var names = new HashSet<string>(StringComparer.Ordinal);
        var all = new List<(int Index, string Name, JsonElement? Parameters)>();
        foreach (var (tool, i) in list.EnumerateArray().Select((t, i) => (t, i)))
        {
            if (tool.ValueKind != JsonValueKind.Object || !tool.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "function")
                throw GpudException.Invalid($"Invalid 'tools[{i}]': gpud supports tools of type 'function'.", $"tools[{i}].type");
            if (!tool.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object
                || !function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || !IsFunctionName(name.GetString()!))
                throw GpudException.Invalid($"Invalid 'tools[{i}].function.name': a name of 1 to 64 letters, digits, '_' or '-' is required.", $"tools[{i}].function.name");
            if (function.TryGetProperty("parameters", out var parameters) && parameters.ValueKind is not (JsonValueKind.Object or JsonValueKind.Null))
                throw GpudException.Invalid($"Invalid 'tools[{i}].function.parameters': must be a JSON Schema object.", $"tools[{i}].function.parameters");
            if (names.Add(name.GetString()!)) all.Add((i, name.GetString()!, parameters.ValueKind == JsonValueKind.Object ? parameters : null));
        }
        if (names.Count == 0) throw GpudException.Invalid("'tools' must not be empty; leave it out to call no tools.", "tools");
        switch (choice)
        {
            case null:
            case { ValueKind: JsonValueKind.String } c when c.GetString() == "auto":
                return new ToolChoice(names, null, Named: false);
            case { ValueKind: JsonValueKind.String } c when c.GetString() == "none":
                return null;
            case { ValueKind: JsonValueKind.String } c when c.GetString() == "required":
                return new ToolChoice(names, all, Named: false);
            case { ValueKind: JsonValueKind.Object } named:
                if (!named.TryGetProperty("type", out var kind) || kind.ValueKind != JsonValueKind.String || kind.GetString() != "function"
                    || !named.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object
                    || !function.TryGetProperty("name", out var chosen) || chosen.ValueKind != JsonValueKind.String)
                    throw GpudException.Invalid("Invalid 'tool_choice': a named choice is {\"type\": \"function\", \"function\": {\"name\": \"…\"}}.", "tool_choice");
                var tool = all.FirstOrDefault(t => t.Name == chosen.GetString());
                if (tool.Name is null)
                    throw GpudException.Invalid($"Invalid 'tool_choice': no function named '{chosen.GetString()}' is in 'tools'.", "tool_choice.function.name");
                return new ToolChoice(new HashSet<string>(StringComparer.Ordinal) { tool.Name }, [tool], Named: true);
            default:
                throw GpudException.Invalid("Invalid 'tool_choice': expected 'none', 'auto', 'required' or a named function.", "tool_choice");
        }
    }

    /// <param name="Callable">The names a call read from the answer may have.</param>
    /// <param name="Forced">The tools one of which the answer must call, or null when it may answer in text.</param>
    /// <param name="Named">A single named function: one call, whatever parallel_tool_calls says.</param>
    private sealed record ToolChoice(HashSet<string> Callable, IReadOnlyList<(int Index, string Name, JsonElement? Parameters)>? Forced, bool Named);

    private static Func<ITokenConstraint> ForcedCall(StructuredOutput output, IReadOnlyList<(int Index, string Name, JsonElement? Parameters)> forced, bool parallel)
    {
        try
        {
            return output.ToolCalls([.. forced.Select(t => (t.Name, t.Parameters))], parallel);
        }
        catch (JsonSchemaException e)
        {
            var (index, name, _) = forced[e.Tool ?? 0];
            throw GpudException.Invalid($"Invalid schema for function '{name}': {e.Message}", $"tools[{index}].function.parameters", "invalid_json_schema");
        }
    }

    private static bool IsFunctionName(string name) =>
        name.Length is >= 1 and <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-');

    private static List<(IReadOnlyList<int>, string)> Prompts(JsonElement? prompt, Engine.Tokenization.TextTokenizer tokenizer, int vocab)
    {
        const string param = "prompt";
        if (prompt is not { } p) throw GpudException.Invalid("You must provide a prompt.", param);
        IReadOnlyList<int> Tokens(JsonElement array, string where)
        {
            var ids = new List<int>();
            foreach (var item in array.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out var id) || id < 0 || id >= vocab)
                    throw GpudException.Invalid($"Invalid {where}: token ids must be integers in [0, {vocab}).", param);
                ids.Add(id);
            }
            if (ids.Count == 0) throw GpudException.Invalid($"Invalid {where}: a prompt needs at least one token.", param);
            return ids;
        }
        (IReadOnlyList<int>, string) Text(string text)
        {
            var ids = tokenizer.Encode(text, addSpecialTokens: true);
            if (ids.Count == 0) throw GpudException.Invalid("The prompt is empty (and the model adds no start token).", param);
            return (ids, text);
        }
        switch (p.ValueKind)
        {
            case JsonValueKind.String:
                return [Text(p.GetString()!)];
            case JsonValueKind.Array when p.GetArrayLength() == 0:
                throw GpudException.Invalid("'prompt' must not be an empty array.", param);
            case JsonValueKind.Array when p.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String):
                return p.EnumerateArray().Select(e => Text(e.GetString()!)).ToList();
            case JsonValueKind.Array when p.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number):
                var ids = Tokens(p, "prompt");
                return [(ids, tokenizer.Decode(ids, skipSpecialTokens: false))];
            case JsonValueKind.Array when p.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Array):
                return p.EnumerateArray().Select((e, i) =>
                {
                    var tokens = Tokens(e, $"prompt[{i}]");
                    return (tokens, tokenizer.Decode(tokens, skipSpecialTokens: false));
                }).ToList();
            default:
                throw GpudException.Invalid("'prompt' must be a string, an array of strings, an array of token ids, or an array of token-id arrays.", param, "invalid_type");
        }
    }

    private static List<string> Stops(JsonElement? stop)
    {
        if (stop is not { } s) return [];
        if (s.ValueKind == JsonValueKind.String) return [s.GetString()!];
        if (s.ValueKind != JsonValueKind.Array || !s.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String))
            throw Invalid("stop", "must be a string or an array of strings", "invalid_type");
        if (s.GetArrayLength() > 4) throw Invalid("stop", "must have at most 4 sequences");
        return s.EnumerateArray().Select(e => e.GetString()!).Where(x => x.Length > 0).ToList();
    }

    private static Dictionary<int, float>? LogitBias(JsonElement? bias, int vocab)
    {
        if (bias is not { } b) return null;
        if (b.ValueKind != JsonValueKind.Object) throw Invalid("logit_bias", "must be an object mapping token ids to numbers", "invalid_type");
        var map = new Dictionary<int, float>();
        foreach (var entry in b.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, NumberStyles.None, CultureInfo.InvariantCulture, out var id) || id >= vocab)
                throw GpudException.Invalid($"Invalid key in 'logit_bias': '{entry.Name}' is not a token id of this model (0..{vocab - 1}).", "logit_bias");
            map[id] = (float)Number(entry.Value, $"logit_bias.{entry.Name}", -100, 100);
        }
        return map.Count == 0 ? null : map;
    }
}
