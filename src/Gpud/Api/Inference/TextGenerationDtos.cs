using System.Text.Json.Serialization;

namespace Gpud.Api.Inference;

/// <summary>OpenAI's <c>usage</c>: prompt tokens once per prompt, completion tokens over every choice generated (best_of included).</summary>
public sealed record Usage(int PromptTokens, int CompletionTokens, int TotalTokens);

/// <summary>Completions' <c>logprobs</c>: parallel lists per token (the first echoed prompt token has null logprob).</summary>
public sealed record CompletionLogprobs(List<string> Tokens, List<float?> TokenLogprobs, List<Dictionary<string, float>?> TopLogprobs, List<int> TextOffset);

public sealed record CompletionChoice(string Text, int Index, CompletionLogprobs? Logprobs, string? FinishReason);

/// <summary><c>text_completion</c>: the response of <c>POST /v1/completions</c>, and each streamed chunk.</summary>
public sealed record CompletionResponse(string Id, string Object, long Created, string Model, string SystemFingerprint, IReadOnlyList<CompletionChoice> Choices, Usage? Usage);

public sealed record TopLogprob(string Token, float Logprob, IReadOnlyList<int> Bytes);

public sealed record ChatTokenLogprob(string Token, float Logprob, IReadOnlyList<int> Bytes, IReadOnlyList<TopLogprob> TopLogprobs);

public sealed record ChatLogprobs(IReadOnlyList<ChatTokenLogprob> Content, IReadOnlyList<ChatTokenLogprob>? Refusal);

/// <summary>
/// An answer: <c>content</c> (null when the answer is only tool calls), the <c>tool_calls</c> it makes, and, for a
/// reasoning model, <c>reasoning_content</c> (its <c>&lt;think&gt;</c> block, as vLLM and DeepSeek return it).
/// </summary>
public sealed record ChatMessage(
    string Role,
    string? Content,
    string? Refusal,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ChatToolCall>? ToolCalls = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? ReasoningContent = null);

public sealed record ChatFunctionCall(string Name, string Arguments);

/// <summary>A function call: <c>id</c> (<c>call_…</c>, for the tool message that answers it), type <c>function</c>.</summary>
public sealed record ChatToolCall(string Id, string Type, ChatFunctionCall Function);

/// <summary>A streamed tool call: gpud sends each call whole, in one delta, once the answer is complete.</summary>
public sealed record ChatToolCallDelta(int Index, string Id, string Type, ChatFunctionCall Function);

public sealed record ChatChoice(int Index, ChatMessage Message, ChatLogprobs? Logprobs, string FinishReason);

/// <summary><c>chat.completion</c>: the response of <c>POST /v1/chat/completions</c>.</summary>
public sealed record ChatCompletionResponse(string Id, string Object, long Created, string Model, string SystemFingerprint, IReadOnlyList<ChatChoice> Choices, Usage Usage);

/// <summary>
/// A streamed delta: <c>role</c> in a choice's first chunk, then <c>reasoning_content</c> pieces (reasoning models),
/// <c>content</c> pieces, then any <c>tool_calls</c>.
/// </summary>
public sealed record ChatDelta(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ChatToolCallDelta>? ToolCalls = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? ReasoningContent = null);

public sealed record ChatChunkChoice(int Index, ChatDelta Delta, ChatLogprobs? Logprobs, string? FinishReason);

/// <summary><c>chat.completion.chunk</c></summary>
public sealed record ChatCompletionChunk(string Id, string Object, long Created, string Model, string SystemFingerprint, IReadOnlyList<ChatChunkChoice> Choices, Usage? Usage);

/// <summary>Documents the request bodies in the OpenAPI spec; the endpoints read the JSON themselves (field-by-field 400s).</summary>
public sealed record CreateCompletionRequest(
    string Model, object Prompt, int? MaxTokens, double? Temperature, double? TopP, int? N, bool? Stream, object? StreamOptions,
    int? Logprobs, bool? Echo, object? Stop, double? PresencePenalty, double? FrequencyPenalty, int? BestOf,
    Dictionary<string, double>? LogitBias, long? Seed, string? Suffix, string? User, int? TopK, ResponseFormat? ResponseFormat);

public sealed record CreateChatCompletionRequest(
    string Model, IReadOnlyList<object> Messages, int? MaxCompletionTokens, double? Temperature, double? TopP, int? N, bool? Stream,
    object? StreamOptions, object? Stop, double? PresencePenalty, double? FrequencyPenalty, Dictionary<string, double>? LogitBias,
    bool? Logprobs, int? TopLogprobs, long? Seed, string? User, IReadOnlyList<ChatTool>? Tools, object? ToolChoice, bool? ParallelToolCalls,
    int? TopK, ResponseFormat? ResponseFormat);

/// <summary>
/// <c>{"type": "text" | "json_object" | "json_schema", "json_schema": {...}}</c>: both JSON types are enforced token by
/// token; a schema keyword gpud cannot enforce is a 400 (<c>invalid_json_schema</c>) naming it.
/// </summary>
public sealed record ResponseFormat(string Type, JsonSchemaFormat? JsonSchema);

/// <param name="Name">1 to 64 letters, digits, underscores or dashes.</param>
/// <param name="Description">What the answer is, for the caller's records (not shown to the model).</param>
/// <param name="Schema">A JSON Schema whose root is an object; without one, any JSON object.</param>
/// <param name="Strict">Accepted for compatibility: gpud always enforces the schema.</param>
public sealed record JsonSchemaFormat(string Name, string? Description, object? Schema, bool? Strict);

/// <summary>A function the model may call: <c>{"type": "function", "function": {"name", "description", "parameters"}}</c>.</summary>
public sealed record ChatTool(string Type, ChatFunctionDefinition Function);

public sealed record ChatFunctionDefinition(string Name, string? Description, object? Parameters, bool? Strict);
