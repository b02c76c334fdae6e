using System.Text.Json;

namespace Gpud.Api.Responses;

// OpenAI's Responses API objects (snake_case on the wire), as much of them as gpud fills.

/// <summary>A response: its output items (reasoning, a message, function calls) and the request fields it repeats.</summary>
public sealed record ResponseObject(
    string Id,
    string Object,
    long CreatedAt,
    string Status,
    bool Background,
    object? Error,
    ResponseIncompleteDetails? IncompleteDetails,
    string? Instructions,
    JsonElement? MaxOutputTokens,
    string Model,
    IReadOnlyList<object> Output,
    bool ParallelToolCalls,
    string? PreviousResponseId,
    ResponseReasoningSettings Reasoning,
    bool Store,
    JsonElement? Temperature,
    JsonElement Text,
    JsonElement ToolChoice,
    JsonElement Tools,
    JsonElement? TopP,
    string Truncation,
    ResponseUsage? Usage,
    string? User,
    JsonElement Metadata);

/// <param name="Reason"><c>max_output_tokens</c>: the answer was cut.</param>
public sealed record ResponseIncompleteDetails(string Reason);

public sealed record ResponseReasoningSettings(string? Effort, string? Summary);

public sealed record ResponseUsage(int InputTokens, ResponseInputTokensDetails InputTokensDetails, int OutputTokens, ResponseOutputTokensDetails OutputTokensDetails, int TotalTokens);

public sealed record ResponseInputTokensDetails(int CachedTokens);

public sealed record ResponseOutputTokensDetails(int ReasoningTokens);

/// <summary>An output item <c>{"type": "message", "role": "assistant", "content": [output_text]}</c>.</summary>
public sealed record ResponseMessageItem(string Id, string Type, string Status, string Role, IReadOnlyList<ResponseOutputText> Content);

public sealed record ResponseOutputText(string Type, string Text, IReadOnlyList<object> Annotations, IReadOnlyList<object> Logprobs);

/// <summary>An output item <c>{"type": "function_call", "call_id", "name", "arguments"}</c>: the model calls a tool.</summary>
public sealed record ResponseFunctionCallItem(string Id, string Type, string Status, string CallId, string Name, string Arguments);

/// <summary>An output item <c>{"type": "reasoning"}</c>: a reasoning model's thinking (Qwen3's &lt;think&gt; block).</summary>
public sealed record ResponseReasoningItem(string Id, string Type, IReadOnlyList<object> Summary, IReadOnlyList<ResponseReasoningText> Content, string Status);

public sealed record ResponseReasoningText(string Type, string Text);

/// <summary>
/// The body of <c>POST /v1/responses</c> (documentation; the endpoint reads the JSON itself). <c>input</c> is a string
/// (one user message) or a list of input items: messages, function calls and their outputs; <c>previous_response_id</c>
/// continues a stored response; <c>store</c> (default true) keeps this one.
/// </summary>
public sealed record CreateResponseRequest(
    string Model,
    object Input,
    string? Instructions,
    int? MaxOutputTokens,
    double? Temperature,
    double? TopP,
    bool? Stream,
    ResponseTextSettings? Text,
    IReadOnlyList<ResponseFunctionTool>? Tools,
    object? ToolChoice,
    bool? ParallelToolCalls,
    bool? Store,
    string? PreviousResponseId,
    Dictionary<string, string>? Metadata,
    string? User);

/// <param name="Format"><c>{"type": "text" | "json_object"}</c> or <c>{"type": "json_schema", "name", "schema", "strict"}</c>.</param>
public sealed record ResponseTextSettings(object? Format);

public sealed record ResponseFunctionTool(string Type, string Name, string? Description, object? Parameters, bool? Strict);

public sealed record ResponseDeleted(string Id, string Object, bool Deleted);

/// <summary>A page of a response's input items (messages, function calls and outputs, each with an id).</summary>
public sealed record ResponseItemList(string Object, IReadOnlyList<JsonElement> Data, string? FirstId, string? LastId, bool HasMore);
