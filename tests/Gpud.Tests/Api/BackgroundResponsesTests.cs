using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>
/// Background responses (<c>background: true</c>): the request returns at once with a <c>queued</c> response that is
/// polled by id until final; a queued or running one can be cancelled; a restart fails those it interrupted.
/// </summary>
public sealed class BackgroundResponsesTests
{
    /// <summary>One row, so a second background response waits while the first one runs.</summary>
    private static readonly Dictionary<string, string?> OneRow = new() { ["Gpud:Inference:MaxBatchSize"] = "1" };

    [Fact]
    public async Task A_background_response_returns_queued_and_is_fetched_complete_by_id()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var body = new { model = "gpud-tiny", input = "hello", max_output_tokens = 24, temperature = 0 };
        var created = await (await client.PostAsJsonAsync("/v1/responses", new { body.model, body.input, body.max_output_tokens, body.temperature, background = true })).Json();
        Assert.Equal("queued", created.GetProperty("status").GetString());
        Assert.True(created.GetProperty("background").GetBoolean());
        Assert.Empty(created.GetProperty("output").EnumerateArray());

        var done = await WaitAsync(client, created.GetProperty("id").GetString()!, "incomplete");
        var direct = await (await client.PostAsJsonAsync("/v1/responses", body)).Json();
        Assert.False(direct.GetProperty("background").GetBoolean());
        Assert.Equal(Text(direct), Text(done));
        Assert.Equal(24, done.GetProperty("usage").GetProperty("output_tokens").GetInt32());

        // A finished background response is continued like any stored one.
        var next = await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", input = "more", max_output_tokens = 2, previous_response_id = done.GetProperty("id").GetString() });
        Assert.Equal(HttpStatusCode.OK, next.StatusCode);
        await (await client.PostAsync($"/v1/responses/{done.GetProperty("id").GetString()}/cancel", null))
            .AssertError(HttpStatusCode.BadRequest, "response_id", "invalid_response_state");
        await (await client.PostAsync($"/v1/responses/{direct.GetProperty("id").GetString()}/cancel", null)).AssertError(HttpStatusCode.BadRequest, "response_id");
    }

    [Fact]
    public async Task A_queued_background_response_is_cancelled_and_stays_cancelled()
    {
        using var gpud = new GpudFactory(OneRow);
        var client = gpud.Client();
        var first = await Background(client, 400);
        var second = await Background(client, 400);
        await (await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", input = "x", previous_response_id = second, max_output_tokens = 2 }))
            .AssertError(HttpStatusCode.BadRequest, "previous_response_id");

        var cancelled = await (await client.PostAsync($"/v1/responses/{second}/cancel", null)).Json();
        Assert.Equal("cancelled", cancelled.GetProperty("status").GetString());
        Assert.Equal("cancelled", (await (await client.PostAsync($"/v1/responses/{second}/cancel", null)).Json()).GetProperty("status").GetString());
        await WaitAsync(client, first, "incomplete", "completed");
        await Task.Delay(200);
        Assert.Equal("cancelled", (await (await client.GetAsync($"/v1/responses/{second}")).Json()).GetProperty("status").GetString());
    }

    [Fact]
    public async Task Background_responses_a_restart_interrupted_fail_with_the_reason()
    {
        using var dir = new TempDir();
        var ids = new List<string>();
        using (var first = new GpudFactory(OneRow, dir.Path))
        {
            var client = first.Client();
            for (var i = 0; i < 4; i++) ids.Add(await Background(client, 400));
        }
        using var second = new GpudFactory(OneRow, dir.Path);
        var again = second.Client();
        var statuses = new List<string>();
        foreach (var id in ids)
        {
            var response = await (await again.GetAsync($"/v1/responses/{id}")).Json();
            statuses.Add(response.GetProperty("status").GetString()!);
            if (statuses[^1] == "failed")
            {
                Assert.Equal("server_error", response.GetProperty("error").GetProperty("code").GetString());
                Assert.Contains("gpud stopped", response.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
            }
        }
        Assert.Contains("failed", statuses);
        Assert.All(statuses, s => Assert.Contains(s, new[] { "completed", "incomplete", "failed" }));
    }

    [Fact]
    public async Task Background_needs_store_and_cannot_stream()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        await (await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", input = "x", background = true, store = false }))
            .AssertError(HttpStatusCode.BadRequest, "store");
        await (await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", input = "x", background = true, stream = true }))
            .AssertError(HttpStatusCode.BadRequest, "stream", "unsupported_parameter");
        await (await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", input = "x", background = "yes" }))
            .AssertError(HttpStatusCode.BadRequest, "background", "invalid_type");
        await (await client.PostAsync("/v1/responses/resp_missing/cancel", null)).AssertError(HttpStatusCode.NotFound, "response_id");
    }

    private static async Task<string> Background(HttpClient client, int tokens)
    {
        // Greedy: gpud-tiny's random weights repeat a token rather than end early, so a long answer takes its time.
        var response = await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", input = "go", max_output_tokens = tokens, temperature = 0, background = true });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return (await response.Json()).GetProperty("id").GetString()!;
    }

    private static async Task<JsonElement> WaitAsync(HttpClient client, string id, params string[] statuses)
    {
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            var response = await (await client.GetAsync($"/v1/responses/{id}")).Json();
            if (statuses.Contains(response.GetProperty("status").GetString())) return response;
            if (DateTime.UtcNow > deadline) Assert.Fail($"response {id} did not reach {string.Join(" or ", statuses)}: {response}");
            await Task.Delay(25);
        }
    }

    private static string? Text(JsonElement response) =>
        response.GetProperty("output").EnumerateArray().Single(i => i.GetProperty("type").GetString() == "message")
            .GetProperty("content")[0].GetProperty("text").GetString();
}
