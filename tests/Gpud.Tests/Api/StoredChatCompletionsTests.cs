using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>
/// Stored chat completions (<c>store: true</c>): kept per project with their request messages, listed by model and
/// metadata, their metadata replaced, deleted, expired after the retention; nothing kept without <c>store</c>.
/// </summary>
public sealed class StoredChatCompletionsTests
{
    private static readonly Dictionary<string, string?> TwoProjects = new()
    {
        ["Gpud:ApiKeys:0:Key"] = "sk-team-a-000000000000", ["Gpud:ApiKeys:0:Project"] = "team-a",
        ["Gpud:ApiKeys:1:Key"] = "sk-team-b-000000000000", ["Gpud:ApiKeys:1:Project"] = "team-b",
    };

    [Fact]
    public async Task A_stored_completion_is_retrieved_with_its_messages_listed_by_metadata_updated_and_deleted()
    {
        using var gpud = new GpudFactory(TwoProjects);
        var client = gpud.Client("sk-team-a-000000000000");
        var answer = await (await client.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "gpud-tiny",
            messages = new object[]
            {
                new { role = "system", content = "be brief" },
                new { role = "user", content = new[] { new { type = "text", text = "hello " }, new { type = "text", text = "there" } } },
            },
            max_tokens = 5,
            store = true,
            metadata = new { suite = "eval", run = "1" },
        })).Json();
        var id = answer.GetProperty("id").GetString()!;
        var unstored = (await (await client.PostAsJsonAsync("/v1/chat/completions", new { model = "gpud-tiny", messages = new[] { new { role = "user", content = "x" } }, max_tokens = 2 })).Json())
            .GetProperty("id").GetString();
        await (await client.GetAsync($"/v1/chat/completions/{unstored}")).AssertError(HttpStatusCode.NotFound, "completion_id");

        var stored = await (await client.GetAsync($"/v1/chat/completions/{id}")).Json();
        Assert.Equal(answer.GetProperty("choices").GetRawText(), stored.GetProperty("choices").GetRawText());
        Assert.Equal(answer.GetProperty("usage").GetRawText(), stored.GetProperty("usage").GetRawText());
        Assert.Equal("eval", stored.GetProperty("metadata").GetProperty("suite").GetString());

        var messages = (await (await client.GetAsync($"/v1/chat/completions/{id}/messages")).Json()).GetProperty("data").EnumerateArray().ToList();
        Assert.Equal([$"{id}-0", $"{id}-1"], messages.Select(m => m.GetProperty("id").GetString()));
        Assert.Equal(("system", "be brief"), (messages[0].GetProperty("role").GetString(), messages[0].GetProperty("content").GetString()));
        Assert.Equal("hello there", messages[1].GetProperty("content").GetString());
        Assert.Equal(2, messages[1].GetProperty("content_parts").GetArrayLength());
        var second = (await (await client.GetAsync($"/v1/chat/completions/{id}/messages?limit=1&after={id}-0")).Json()).GetProperty("data");
        Assert.Equal($"{id}-1", second[0].GetProperty("id").GetString());

        // Another stored completion without the metadata, on another project's key: neither matches.
        await client.PostAsJsonAsync("/v1/chat/completions", new { model = "gpud-tiny", messages = new[] { new { role = "user", content = "y" } }, max_tokens = 2, store = true });
        var other = gpud.Client("sk-team-b-000000000000");
        await other.PostAsJsonAsync("/v1/chat/completions", new { model = "gpud-tiny", messages = new[] { new { role = "user", content = "z" } }, max_tokens = 2, store = true, metadata = new { suite = "eval" } });
        Assert.Equal([id], await Ids(client, "/v1/chat/completions?metadata[suite]=eval"));
        Assert.Equal(2, (await Ids(client, "/v1/chat/completions?model=gpud-tiny")).Count);
        Assert.Empty(await Ids(client, "/v1/chat/completions?model=ft:other"));
        await (await other.GetAsync($"/v1/chat/completions/{id}")).AssertError(HttpStatusCode.NotFound, "completion_id");

        var updated = await (await client.PostAsJsonAsync($"/v1/chat/completions/{id}", new { metadata = new { suite = "done" } })).Json();
        Assert.Equal("done", updated.GetProperty("metadata").GetProperty("suite").GetString());
        Assert.False(updated.GetProperty("metadata").TryGetProperty("run", out _)); // replaced, not merged
        Assert.Empty(await Ids(client, "/v1/chat/completions?metadata[suite]=eval"));

        var deleted = await (await client.DeleteAsync($"/v1/chat/completions/{id}")).Json();
        Assert.Equal("chat.completion.deleted", deleted.GetProperty("object").GetString());
        Assert.True(deleted.GetProperty("deleted").GetBoolean());
        await (await client.GetAsync($"/v1/chat/completions/{id}")).AssertError(HttpStatusCode.NotFound, "completion_id");
        await (await client.DeleteAsync($"/v1/chat/completions/{id}")).AssertError(HttpStatusCode.NotFound, "completion_id");
    }

    [Fact]
    public async Task A_streamed_completion_is_stored_as_the_whole_answer_the_stream_delivered()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var body = new { model = "gpud-tiny", messages = new[] { new { role = "user", content = "stream me" } }, max_tokens = 12, seed = 5, n = 2, logprobs = true, store = true, stream = true };
        var events = await (await client.PostAsJsonAsync("/v1/chat/completions", body)).Events();
        var id = events[0].GetProperty("id").GetString()!;
        string Streamed(int choice) => string.Concat(events.SelectMany(e => e.GetProperty("choices").EnumerateArray())
            .Where(c => c.GetProperty("index").GetInt32() == choice && c.GetProperty("delta").TryGetProperty("content", out var t) && t.ValueKind == JsonValueKind.String)
            .Select(c => c.GetProperty("delta").GetProperty("content").GetString()));

        var stored = await (await client.GetAsync($"/v1/chat/completions/{id}")).Json();
        var choices = stored.GetProperty("choices");
        Assert.Equal(2, choices.GetArrayLength());
        for (var c = 0; c < 2; c++)
        {
            Assert.Equal(Streamed(c), choices[c].GetProperty("message").GetProperty("content").GetString());
            Assert.Equal(12, choices[c].GetProperty("logprobs").GetProperty("content").GetArrayLength());
            Assert.Equal("length", choices[c].GetProperty("finish_reason").GetString());
        }
        Assert.Equal(24, stored.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task Bad_requests_get_openai_style_errors_and_store_nothing()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var tooMany = Enumerable.Range(0, 17).ToDictionary(i => $"k{i}", i => "v");
        await (await client.PostAsJsonAsync("/v1/chat/completions", new { model = "gpud-tiny", messages = new[] { new { role = "user", content = "x" } }, store = true, metadata = tooMany }))
            .AssertError(HttpStatusCode.BadRequest, "metadata");
        await (await client.PostAsJsonAsync("/v1/chat/completions", new { model = "gpud-tiny", messages = new[] { new { role = "user", content = "x" } }, store = "yes" }))
            .AssertError(HttpStatusCode.BadRequest, "store", "invalid_type");
        Assert.Empty(await Ids(client, "/v1/chat/completions"));
        await (await client.GetAsync("/v1/chat/completions?limit=0")).AssertError(HttpStatusCode.BadRequest, "limit", "integer_out_of_range");
        await (await client.GetAsync("/v1/chat/completions?order=up")).AssertError(HttpStatusCode.BadRequest, "order");
        await (await client.GetAsync("/v1/chat/completions?after=chatcmpl-nope")).AssertError(HttpStatusCode.BadRequest, "after");

        var id = (await (await client.PostAsJsonAsync("/v1/chat/completions", new { model = "gpud-tiny", messages = new[] { new { role = "user", content = "x" } }, max_tokens = 2, store = true })).Json())
            .GetProperty("id").GetString();
        await (await client.PostAsJsonAsync($"/v1/chat/completions/{id}", new { metadata = new { a = "b" }, model = "x" })).AssertError(HttpStatusCode.BadRequest, "model", "unknown_parameter");
        await (await client.PostAsJsonAsync($"/v1/chat/completions/{id}", new { })).AssertError(HttpStatusCode.BadRequest, "metadata", "missing_required_parameter");
        var cleared = await (await client.PostAsJsonAsync($"/v1/chat/completions/{id}", new { metadata = (object?)null })).Json();
        Assert.Equal(JsonValueKind.Null, cleared.GetProperty("metadata").ValueKind);
    }

    [Fact]
    public async Task A_stored_completion_expires_after_the_retention()
    {
        var time = new ManualTime(DateTimeOffset.UtcNow);
        using var gpud = new GpudFactory(new Dictionary<string, string?> { ["Gpud:Inference:StoredResponseDays"] = "30" }, time: time);
        var client = gpud.Client();
        var id = (await (await client.PostAsJsonAsync("/v1/chat/completions", new { model = "gpud-tiny", messages = new[] { new { role = "user", content = "x" } }, max_tokens = 2, store = true })).Json())
            .GetProperty("id").GetString();
        time.Advance(TimeSpan.FromDays(29));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/chat/completions/{id}")).StatusCode);
        time.Advance(TimeSpan.FromDays(2));
        await (await client.GetAsync($"/v1/chat/completions/{id}")).AssertError(HttpStatusCode.NotFound, "completion_id");
        Assert.Empty(await Ids(client, "/v1/chat/completions"));
    }

    private static async Task<List<string>> Ids(HttpClient client, string url) =>
        (await (await client.GetAsync(url)).Json()).GetProperty("data").EnumerateArray().Select(c => c.GetProperty("id").GetString()!).ToList();
}
