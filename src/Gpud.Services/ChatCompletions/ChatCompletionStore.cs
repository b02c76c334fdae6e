using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Services.Errors;
using Gpud.Storage.ChatCompletions;

namespace Gpud.Services.ChatCompletions;

/// <summary>
/// Stored chat completions (<c>store: true</c>), per project, as OpenAI keeps them for evaluation and distillation:
/// listed (by model and metadata), retrieved with their request messages, their metadata replaced, deleted.
/// </summary>
/// <param name="retention">How long a completion is kept; null: until deleted. Past it, a completion is gone at once
/// and its row is removed by the next <see cref="DeleteExpired"/>.</param>
public sealed class ChatCompletionStore(ChatCompletionRepository completions, TimeProvider time, TimeSpan? retention)
{
    public const int MaxListLimit = 100;

    public void Save(string project, string id, long createdAt, string model, IReadOnlyDictionary<string, string>? metadata, string messages, string completion) =>
        completions.Insert(new ChatCompletionRecord(id, project, createdAt, model, metadata is null ? null : JsonSerializer.Serialize(metadata), messages, completion));

    /// <summary>The <c>chat.completion</c> object with its current <c>metadata</c>, or a 404.</summary>
    public JsonObject Get(string project, string id) => View(Find(project, id));

    /// <summary>A page of completions, oldest first unless <paramref name="order"/> is <c>desc</c>.</summary>
    public (List<JsonObject> Items, bool HasMore) List(string project, int? limit, string? order, string? after, string? model,
        IReadOnlyDictionary<string, string> metadata)
    {
        var page = completions.List(project, Limit(limit), after, Ascending(order), Cutoff(), model, metadata)
                   ?? throw GpudException.Invalid($"No such stored chat completion: {after} (the 'after' cursor).", "after");
        return (page.Items.Select(View).ToList(), page.HasMore);
    }

    /// <summary>
    /// The request's messages, each with an id (<c>{completion id}-{index}</c>) and, for content given as parts, the
    /// text joined into <c>content</c> and the parts in <c>content_parts</c>.
    /// </summary>
    public (List<JsonObject> Items, bool HasMore) Messages(string project, string id, int? limit, string? order, string? after)
    {
        var record = Find(project, id);
        var messages = JsonNode.Parse(record.Messages)!.AsArray().Select((m, i) => Message(id, i, m!.AsObject())).ToList();
        if (!Ascending(order)) messages.Reverse();
        if (after is not null)
        {
            var at = messages.FindIndex(m => (string?)m["id"] == after);
            if (at < 0) throw GpudException.Invalid($"No message {after} in chat completion {id} (the 'after' cursor).", "after");
            messages = messages[(at + 1)..];
        }
        var take = Limit(limit);
        return (messages.Take(take).ToList(), messages.Count > take);
    }

    /// <summary><c>{"metadata": {...} | null}</c>: replaces the completion's metadata; returns the completion.</summary>
    public JsonObject UpdateMetadata(string project, string id, JsonElement body)
    {
        var fields = RequestFields.Known(body, MetadataOnly);
        if (!body.TryGetProperty("metadata", out var given))
            throw GpudException.Invalid("Missing required parameter: 'metadata'.", "metadata", "missing_required_parameter");
        var metadata = fields.ContainsKey("metadata") ? RequestFields.Metadata(given) : null;
        Find(project, id);
        if (!completions.SetMetadata(project, id, metadata is null ? null : JsonSerializer.Serialize(metadata))) throw NotFound(id);
        return Get(project, id);
    }

    public void Delete(string project, string id)
    {
        Find(project, id);
        if (!completions.Delete(project, id)) throw NotFound(id);
    }

    /// <summary>Removes the rows of expired completions; returns how many.</summary>
    public int DeleteExpired() => retention is not null ? completions.DeleteCreatedBefore(Cutoff()) : 0;

    public static GpudException NotFound(string id) =>
        GpudException.NotFound($"No stored chat completion found with id '{id}' (only completions created with store: true are kept).", "completion_id");

    private static readonly HashSet<string> MetadataOnly = new(StringComparer.Ordinal) { "metadata" };

    private ChatCompletionRecord Find(string project, string id) => completions.Find(project, id, Cutoff()) ?? throw NotFound(id);

    private long Cutoff() => retention is { } keep ? (time.GetUtcNow() - keep).ToUnixTimeSeconds() : long.MinValue;

    private static JsonObject View(ChatCompletionRecord record)
    {
        var completion = JsonNode.Parse(record.Completion)!.AsObject();
        completion["metadata"] = record.Metadata is null ? null : JsonNode.Parse(record.Metadata);
        return completion;
    }

    private static JsonObject Message(string completionId, int index, JsonObject message)
    {
        var view = new JsonObject { ["id"] = $"{completionId}-{index}" };
        var properties = message.ToList();
        message.Clear(); // detached, the nodes move over without a copy
        JsonNode? parts = null;
        foreach (var (name, value) in properties)
        {
            if (name == "content" && value is JsonArray array)
            {
                var text = new StringBuilder();
                foreach (var part in array)
                {
                    if (part is JsonObject p && (string?)p["type"] == "text") text.Append((string?)p["text"]);
                }
                view["content"] = text.ToString();
                parts = array;
                continue;
            }
            view[name] = value;
        }
        view["content_parts"] = parts;
        return view;
    }

    private static int Limit(int? limit) => RequestFields.ListLimit(limit, 20, MaxListLimit);

    private static bool Ascending(string? order) => RequestFields.Ascending(order, fallback: true);
}
