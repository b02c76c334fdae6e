using System.Security.Claims;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Api.Auth;
using Gpud.Api.Errors;
using Gpud.Api.Lists;
using Gpud.Services.ChatCompletions;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Gpud.Api.Inference;

/// <summary>
/// OpenAI's stored chat completions: what <c>POST /v1/chat/completions</c> kept with <c>store: true</c>, listed by
/// model and metadata, retrieved with its request messages, its metadata replaced, deleted.
/// </summary>
internal static class StoredChatCompletionsEndpoints
{
    public static RouteGroupBuilder MapStoredChatCompletions(this RouteGroupBuilder v1)
    {
        var stored = v1.MapGroup("/chat/completions").WithTags("Chat");
        stored.MapGet("/", List).Produces<StoredChatCompletionList>(StatusCodes.Status200OK, "application/json")
            .WithName("listChatCompletions").WithSummary("List stored chat completions, oldest first (filter with model and metadata[key]=value).");
        stored.MapGet("/{completion_id}", Get).Produces<ChatCompletionResponse>(StatusCodes.Status200OK, "application/json")
            .WithName("getChatCompletion").WithSummary("Retrieve a stored chat completion.");
        stored.MapPost("/{completion_id}", Update).Accepts<UpdateChatCompletionRequest>("application/json")
            .Produces<ChatCompletionResponse>(StatusCodes.Status200OK, "application/json")
            .WithName("updateChatCompletion").WithSummary("Replace a stored chat completion's metadata.");
        stored.MapDelete("/{completion_id}", Delete)
            .WithName("deleteChatCompletion").WithSummary("Delete a stored chat completion.");
        stored.MapGet("/{completion_id}/messages", Messages).Produces<StoredChatMessageList>(StatusCodes.Status200OK, "application/json")
            .WithName("getChatCompletionMessages").WithSummary("List the messages of a stored chat completion's request.");
        return v1;
    }

    private static Results<JsonHttpResult<JsonObject>, JsonHttpResult<ErrorResponse>> List(HttpContext context, ClaimsPrincipal user,
        ChatCompletionStore store, string? after, string? limit, string? order, string? model)
    {
        if (!ListQuery.TryParseLimit(limit, out var take, out var error)) return error;
        var (items, more) = store.List(user.Project(), take, order, string.IsNullOrEmpty(after) ? null : after, string.IsNullOrEmpty(model) ? null : model,
            ListQuery.Metadata(context.Request.Query));
        return TypedResults.Json(Page(items, more));
    }

    private static JsonHttpResult<JsonObject> Get(string completion_id, ClaimsPrincipal user, ChatCompletionStore store) =>
        TypedResults.Json(store.Get(user.Project(), completion_id));

    private static JsonHttpResult<JsonObject> Update(string completion_id, JsonElement body, ClaimsPrincipal user, ChatCompletionStore store) =>
        TypedResults.Json(store.UpdateMetadata(user.Project(), completion_id, body));

    private static Ok<ChatCompletionDeleted> Delete(string completion_id, ClaimsPrincipal user, ChatCompletionStore store)
    {
        store.Delete(user.Project(), completion_id);
        return TypedResults.Ok(new ChatCompletionDeleted("chat.completion.deleted", completion_id, true));
    }

    private static Results<JsonHttpResult<JsonObject>, JsonHttpResult<ErrorResponse>> Messages(string completion_id, ClaimsPrincipal user,
        ChatCompletionStore store, string? after, string? limit, string? order)
    {
        if (!ListQuery.TryParseLimit(limit, out var take, out var error)) return error;
        var (items, more) = store.Messages(user.Project(), completion_id, take, order, string.IsNullOrEmpty(after) ? null : after);
        return TypedResults.Json(Page(items, more));
    }

    private static JsonObject Page(List<JsonObject> items, bool hasMore) => new()
    {
        ["object"] = "list",
        ["data"] = new JsonArray([.. items]),
        ["first_id"] = items.Count > 0 ? (string?)items[0]["id"] : null,
        ["last_id"] = items.Count > 0 ? (string?)items[^1]["id"] : null,
        ["has_more"] = hasMore,
    };
}

public sealed record ChatCompletionDeleted(string Object, string Id, bool Deleted);

/// <summary>Documents the request body in the OpenAPI spec: the metadata that replaces the completion's (null clears it).</summary>
public sealed record UpdateChatCompletionRequest(Dictionary<string, string>? Metadata);

/// <summary>Documents the list in the OpenAPI spec: stored <c>chat.completion</c> objects, each with its <c>metadata</c>.</summary>
public sealed record StoredChatCompletionList(string Object, IReadOnlyList<ChatCompletionResponse> Data, string? FirstId, string? LastId, bool HasMore);

/// <summary>A stored request message: <c>{"id": "{completion id}-{index}", "role", "content", "content_parts", …}</c>.</summary>
public sealed record StoredChatMessage(string Id, string Role, string? Content, IReadOnlyList<object>? ContentParts);

public sealed record StoredChatMessageList(string Object, IReadOnlyList<StoredChatMessage> Data, string? FirstId, string? LastId, bool HasMore);
