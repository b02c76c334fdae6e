using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Services.Errors;
using Gpud.Storage.Responses;

namespace Gpud.Services.Responses;

/// <summary>
/// Stored responses (<c>store</c>, on by default as at OpenAI), per project: retrieved, deleted, listed by input
/// item, and continued with <c>previous_response_id</c>, which replays the chain's items in order.
/// </summary>
/// <param name="retention">How long a response is kept; null: until deleted. Past it, a response is gone at once
/// (<see cref="Find"/> no longer sees it) and its row is removed by the next <see cref="DeleteExpired"/>.</param>
public sealed class ResponseStore(ResponseRepository responses, TimeProvider time, TimeSpan? retention)
{
    /// <summary>Chains longer than this are refused rather than replayed (each link is a stored request).</summary>
    public const int MaxChain = 10_000;

    public void Save(string project, string id, long createdAt, string? previousId, JsonArray input, string response) =>
        responses.Insert(new ResponseRecord(id, project, createdAt, previousId, input.ToJsonString(), response));

    /// <summary>Stores a background response as it starts: <c>queued</c>, no output yet.</summary>
    public void SaveBackground(string project, string id, long createdAt, string? previousId, JsonArray input, string response) =>
        responses.Insert(new ResponseRecord(id, project, createdAt, previousId, input.ToJsonString(), response, BackgroundStatus.Queued));

    /// <summary>Records a background response's progress or end; false when a cancel (or the end) got there first.</summary>
    public bool AdvanceBackground(string id, string status, string response) =>
        responses.AdvanceBackground(id, status == BackgroundStatus.InProgress ? [BackgroundStatus.Queued] : BackgroundStatus.Pending, status, response);

    /// <summary>
    /// Cancels a queued or running background response (its JSON says <c>cancelled</c> at once; the run is stopped by
    /// the caller). Cancelling a cancelled one changes nothing; any other response is a 400.
    /// </summary>
    public string Cancel(string project, string id)
    {
        var record = Find(project, id);
        if (record.BackgroundStatus is null)
            throw GpudException.Invalid($"Response {id} was not created with background: true; only background responses can be cancelled.", "response_id");
        if (record.BackgroundStatus == BackgroundStatus.Cancelled) return record.Response;
        if (BackgroundStatus.Pending.Contains(record.BackgroundStatus)
            && responses.AdvanceBackground(id, BackgroundStatus.Pending, BackgroundStatus.Cancelled, WithStatus(record.Response, BackgroundStatus.Cancelled, null)))
            return Find(project, id).Response;
        var now = Find(project, id);
        if (now.BackgroundStatus == BackgroundStatus.Cancelled) return now.Response;
        throw GpudException.Invalid($"Cannot cancel response {id}: its status is '{now.BackgroundStatus}'.", "response_id", "invalid_response_state");
    }

    /// <summary>
    /// After a restart: background responses that were queued or running when gpud stopped fail, saying so (their
    /// runs died with the process). Returns how many.
    /// </summary>
    public int FailInterrupted()
    {
        var failed = 0;
        foreach (var record in responses.WithBackgroundStatus(BackgroundStatus.Pending))
        {
            var error = new JsonObject { ["code"] = "server_error", ["message"] = "gpud stopped before this background response finished; create it again." };
            if (responses.AdvanceBackground(record.Id, BackgroundStatus.Pending, BackgroundStatus.Failed, WithStatus(record.Response, BackgroundStatus.Failed, error))) failed++;
        }
        return failed;
    }

    /// <summary>The response JSON with another status (and error).</summary>
    public static string WithStatus(string response, string status, JsonObject? error)
    {
        var node = JsonNode.Parse(response)!.AsObject();
        node["status"] = status;
        if (error is not null) node["error"] = error;
        return node.ToJsonString();
    }

    /// <summary>The stored response object (JSON), or a 404.</summary>
    public string Get(string project, string id) => Find(project, id).Response;

    public void Delete(string project, string id)
    {
        if (!responses.Delete(project, id)) throw NotFound(id);
    }

    /// <summary>
    /// The conversation up to and including the response: for each response of its chain, oldest first, its input
    /// items then its output items.
    /// </summary>
    public IReadOnlyList<JsonElement> Conversation(string project, string id)
    {
        var chain = new List<ResponseRecord>();
        for (string? at = id; at is not null; at = chain[^1].PreviousId)
        {
            if (chain.Count == MaxChain)
                throw GpudException.Invalid($"The response chain is longer than {MaxChain} responses.", "previous_response_id");
            var link = Live(project, at)
                       ?? throw GpudException.Invalid($"Previous response with id '{at}' not found.", "previous_response_id", "previous_response_not_found");
            if (link.BackgroundStatus is { } status && status != BackgroundStatus.Completed && status != BackgroundStatus.Incomplete)
                throw GpudException.Invalid($"Previous response '{at}' is a background response with status '{status}'; only a finished one can be continued.",
                    "previous_response_id");
            chain.Add(link);
        }
        chain.Reverse();
        var items = new List<JsonElement>();
        foreach (var record in chain)
        {
            using var input = JsonDocument.Parse(record.Input);
            using var response = JsonDocument.Parse(record.Response);
            items.AddRange(input.RootElement.EnumerateArray().Select(i => i.Clone()));
            items.AddRange(response.RootElement.GetProperty("output").EnumerateArray().Select(i => i.Clone()));
        }
        return items;
    }

    /// <summary>The response's own input items, newest first unless <paramref name="ascending"/>, after the cursor.</summary>
    public (List<JsonElement> Items, bool HasMore) InputItems(string project, string id, int limit, bool ascending, string? after)
    {
        using var document = JsonDocument.Parse(Find(project, id).Input);
        var items = document.RootElement.EnumerateArray().Select(i => i.Clone()).ToList();
        if (!ascending) items.Reverse();
        if (after is not null)
        {
            var at = items.FindIndex(i => i.TryGetProperty("id", out var itemId) && itemId.GetString() == after);
            if (at < 0) throw GpudException.Invalid($"No input item {after} in response {id} (the 'after' cursor).", "after");
            items = items[(at + 1)..];
        }
        return (items.Take(limit).ToList(), items.Count > limit);
    }

    /// <summary>Removes the rows of expired responses; returns how many.</summary>
    public int DeleteExpired() => retention is { } keep ? responses.DeleteCreatedBefore(Cutoff(keep)) : 0;

    private ResponseRecord Find(string project, string id) => Live(project, id) ?? throw NotFound(id);

    private ResponseRecord? Live(string project, string id) =>
        responses.Find(project, id) is { } record && (retention is not { } keep || record.CreatedAt >= Cutoff(keep)) ? record : null;

    private long Cutoff(TimeSpan keep) => (time.GetUtcNow() - keep).ToUnixTimeSeconds();

    private static GpudException NotFound(string id) => GpudException.NotFound($"No response with id '{id}' found.", "response_id");
}

/// <summary>A background response's statuses, as the Responses API names them.</summary>
public static class BackgroundStatus
{
    public const string Queued = "queued";
    public const string InProgress = "in_progress";
    public const string Completed = "completed";
    public const string Incomplete = "incomplete";
    public const string Failed = "failed";
    public const string Cancelled = "cancelled";

    /// <summary>Not final: a run may still change it.</summary>
    public static readonly string[] Pending = [Queued, InProgress];
}
