using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Gpud.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Gpud.Tests.Api;

/// <summary>
/// OpenAI's Responses API (<c>/v1/responses</c>) over the chat pipeline: the same conversation answers alike as a
/// response and as a chat completion, whole and as typed stream events; responses are stored, retrieved, continued and
/// deleted; what gpud does not do is refused by name.
/// </summary>
public sealed class ResponsesApiTests
{
    private static readonly object[] Input =
    [
        new { role = "user", content = "hi" },
        new { role = "assistant", content = new[] { new { type = "output_text", text = "Hello." } } },
        new { type = "message", role = "user", content = new[] { new { type = "input_text", text = "2+2=" } } },
    ];

    [Fact]
    public async Task A_response_is_the_chat_completion_of_the_same_conversation_whole_and_streamed()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        var chat = await (await client.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "gpud-tiny", max_completion_tokens = 12, temperature = 0,
            messages = new object[] { new { role = "system", content = "Be brief." }, new { role = "user", content = "hi" }, new { role = "assistant", content = "Hello." }, new { role = "user", content = "2+2=" } },
        })).Json();
        var text = chat.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        var status = chat.GetProperty("choices")[0].GetProperty("finish_reason").GetString() == "length" ? "incomplete" : "completed";
        var usage = chat.GetProperty("usage");
        var request = new Dictionary<string, object> { ["model"] = "gpud-tiny", ["instructions"] = "Be brief.", ["input"] = Input, ["max_output_tokens"] = 12, ["temperature"] = 0 };

        var whole = await client.PostAsJsonAsync("/v1/responses", request);
        Assert.Equal(HttpStatusCode.OK, whole.StatusCode);
        var response = await whole.Json();
        Assert.StartsWith("resp_", response.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal(("response", status, "Be brief.", 12, true), (response.GetProperty("object").GetString(), response.GetProperty("status").GetString(),
            response.GetProperty("instructions").GetString(), response.GetProperty("max_output_tokens").GetInt32(), response.GetProperty("store").GetBoolean()));
        if (status == "incomplete") Assert.Equal("max_output_tokens", response.GetProperty("incomplete_details").GetProperty("reason").GetString());
        var message = Assert.Single(response.GetProperty("output").EnumerateArray().ToList());
        Assert.Equal(("message", "assistant", status), (message.GetProperty("type").GetString(), message.GetProperty("role").GetString(), message.GetProperty("status").GetString()));
        var part = Assert.Single(message.GetProperty("content").EnumerateArray().ToList());
        Assert.Equal(("output_text", text), (part.GetProperty("type").GetString(), part.GetProperty("text").GetString()));
        var tokens = response.GetProperty("usage");
        Assert.Equal((usage.GetProperty("prompt_tokens").GetInt32(), usage.GetProperty("completion_tokens").GetInt32(), usage.GetProperty("total_tokens").GetInt32()),
            (tokens.GetProperty("input_tokens").GetInt32(), tokens.GetProperty("output_tokens").GetInt32(), tokens.GetProperty("total_tokens").GetInt32()));

        request["stream"] = true;
        var streamed = await client.PostAsJsonAsync("/v1/responses", request);
        Assert.Equal("text/event-stream", streamed.Content.Headers.ContentType?.MediaType);
        var events = await streamed.TypedEvents();
        Assert.All(events, e => Assert.Equal(e.Name, e.Data.GetProperty("type").GetString()));
        Assert.Equal(Enumerable.Range(0, events.Count), events.Select(e => e.Data.GetProperty("sequence_number").GetInt32()));
        Assert.Equal(["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"], events.Take(4).Select(e => e.Name));
        Assert.Equal(["response.output_text.done", "response.content_part.done", "response.output_item.done", $"response.{status}"], events.TakeLast(4).Select(e => e.Name));
        Assert.Equal(text, string.Concat(events.Where(e => e.Name == "response.output_text.delta").Select(e => e.Data.GetProperty("delta").GetString())));
        var final = events[^1].Data.GetProperty("response");
        Assert.Equal(status, final.GetProperty("status").GetString());
        Assert.Equal(text, final.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(tokens.GetProperty("output_tokens").GetInt32(), final.GetProperty("usage").GetProperty("output_tokens").GetInt32());
        var itemId = events[2].Data.GetProperty("item").GetProperty("id").GetString();
        Assert.All(events.Where(e => e.Data.TryGetProperty("item_id", out _)), e => Assert.Equal(itemId, e.Data.GetProperty("item_id").GetString()));
        Assert.Equal(itemId, final.GetProperty("output")[0].GetProperty("id").GetString());
    }

    [Fact]
    public async Task A_stored_response_is_retrieved_continued_listed_and_deleted()
    {
        using var gpud = new GpudFactory();
        var client = gpud.Client();
        async Task<string> Chat(params string[] turns) => (await (await client.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = "gpud-tiny", max_completion_tokens = 6, temperature = 0,
            messages = turns.Select((t, i) => new { role = i % 2 == 0 ? "user" : "assistant", content = t }).ToArray(),
        })).Json()).GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
        static string Text(JsonElement response) => response.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString()!;

        var first = await (await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", instructions = "Not carried over.", input = "hi", max_output_tokens = 6, temperature = 0 })).Json();
        var id = first.GetProperty("id").GetString()!;
        Assert.True(first.GetProperty("store").GetBoolean()); // stored unless told not to, as at OpenAI
        Assert.Equal(first.GetRawText(), (await client.GetStringAsync($"/v1/responses/{id}")).Trim());

        // Continued: the stored turns come first; instructions are not carried over (as OpenAI documents).
        var second = await (await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", previous_response_id = id, input = "more", max_output_tokens = 6, temperature = 0 })).Json();
        Assert.Equal(id, second.GetProperty("previous_response_id").GetString());
        Assert.Equal(await Chat("hi", Text(first), "more"), Text(second));
        var streamed = await (await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", previous_response_id = second.GetProperty("id").GetString(), input = "again", max_output_tokens = 6, temperature = 0, stream = true })).TypedEvents();
        var third = events(streamed);
        Assert.Equal(await Chat("hi", Text(first), "more", Text(second), "again"), Text(third));
        Assert.Equal(third.GetRawText(), (await client.GetStringAsync($"/v1/responses/{third.GetProperty("id").GetString()}")).Trim());

        // Its own input items only, with ids.
        var items = await (await client.GetAsync($"/v1/responses/{second.GetProperty("id").GetString()}/input_items?order=asc")).Json();
        var item = Assert.Single(items.GetProperty("data").EnumerateArray().ToList());
        Assert.StartsWith("msg_", item.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal(("user", "more"), (item.GetProperty("role").GetString(), item.GetProperty("content")[0].GetProperty("text").GetString()));
        Assert.Equal((item.GetProperty("id").GetString(), false), (items.GetProperty("first_id").GetString(), items.GetProperty("has_more").GetBoolean()));

        // Deleted: gone, and the chain through it can no longer be continued.
        var deleted = await (await client.DeleteAsync($"/v1/responses/{id}")).Json();
        Assert.Equal((id, true), (deleted.GetProperty("id").GetString(), deleted.GetProperty("deleted").GetBoolean()));
        await (await client.GetAsync($"/v1/responses/{id}")).AssertError(HttpStatusCode.NotFound, "response_id");
        await (await client.DeleteAsync($"/v1/responses/{id}")).AssertError(HttpStatusCode.NotFound, "response_id");
        var broken = await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", previous_response_id = second.GetProperty("id").GetString(), input = "x" });
        Assert.Contains(id, (await broken.AssertError(HttpStatusCode.BadRequest, "previous_response_id", "previous_response_not_found")).GetProperty("message").GetString());

        // store: false keeps nothing.
        var unstored = await (await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", input = "hi", max_output_tokens = 2, store = false })).Json();
        Assert.False(unstored.GetProperty("store").GetBoolean());
        await (await client.GetAsync($"/v1/responses/{unstored.GetProperty("id").GetString()}")).AssertError(HttpStatusCode.NotFound, "response_id");

        static JsonElement events(List<(string Name, JsonElement Data)> e) => e[^1].Data.GetProperty("response");
    }

    [Theory]
    [InlineData(null, true)] // the default: 30 days
    [InlineData("0", false)] // kept until deleted
    public async Task A_stored_response_expires_after_the_configured_days(string? days, bool expires)
    {
        var time = new ManualTime(DateTimeOffset.UtcNow);
        using var gpud = new GpudFactory(days is null ? null : new Dictionary<string, string?> { ["Gpud:Inference:StoredResponseDays"] = days }, time: time);
        var client = gpud.Client();
        var id = (await (await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", input = "hi", max_output_tokens = 2 })).Json()).GetProperty("id").GetString();
        time.Advance(TimeSpan.FromDays(29));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/responses/{id}")).StatusCode);
        time.Advance(TimeSpan.FromDays(2));
        var store = gpud.Services.GetRequiredService<Gpud.Services.Responses.ResponseStore>();
        if (!expires)
        {
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/responses/{id}")).StatusCode);
            Assert.Equal(0, store.DeleteExpired());
            return;
        }
        // Gone at once from the API, and from the database at the next sweep.
        await (await client.GetAsync($"/v1/responses/{id}")).AssertError(HttpStatusCode.NotFound, "response_id");
        await (await client.PostAsJsonAsync("/v1/responses", new { model = "gpud-tiny", input = "x", previous_response_id = id })).AssertError(HttpStatusCode.BadRequest, "previous_response_id", "previous_response_not_found");
        Assert.Equal(1, store.DeleteExpired());
    }

    [Fact]
    public async Task Text_format_json_schema_constrains_the_answer_as_response_format_does()
    {
        using var gpud = new GpudFactory();
        var response = await (await gpud.Client().PostAsJsonAsync("/v1/responses", new
        {
            model = "gpud-tiny", input = "A city", max_output_tokens = 400,
            text = new { format = new { type = "json_schema", name = "city", strict = true, schema = JsonDocument.Parse("""{"type":"object","properties":{"city":{"enum":["Paris","Lyon"]},"big":{"type":"boolean"}},"required":["city","big"],"additionalProperties":false}""").RootElement } },
        })).Json();
        Assert.Equal("completed", response.GetProperty("status").GetString());
        Assert.Equal("json_schema", response.GetProperty("text").GetProperty("format").GetProperty("type").GetString());
        using var answer = JsonDocument.Parse(response.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString()!);
        Assert.Contains(answer.RootElement.GetProperty("city").GetString(), new[] { "Paris", "Lyon" });
        Assert.Contains(answer.RootElement.GetProperty("big").ValueKind, new[] { JsonValueKind.True, JsonValueKind.False });
    }

    public static TheoryData<string, int, string, string?> BadRequests => new()
    {
        { """{"model":"gpud-tiny","input":"x","previous_response_id":"resp_nope"}""", 400, "previous_response_id", "previous_response_not_found" },
        { """{"model":"gpud-tiny","input":"x","conversation":"conv_1"}""", 400, "conversation", "unsupported_parameter" },
        { """{"model":"gpud-tiny","input":"x","store":"yes"}""", 400, "store", "invalid_type" },
        { """{"model":"gpud-tiny","input":"x","reasoning":{"effort":"low"}}""", 400, "reasoning", "unsupported_parameter" },
        { """{"model":"gpud-tiny","input":"x","n":2}""", 400, "n", "unknown_parameter" },
        { """{"model":"gpud-tiny"}""", 400, "input", null },
        { """{"model":"gpud-tiny","input":[]}""", 400, "input", null },
        { """{"model":"gpud-tiny","input":[{"role":"user","content":[{"type":"input_image","image_url":"https://x/y.png"}]}]}""", 400, "input[0].content[0]", "unsupported_parameter" },
        { """{"model":"gpud-tiny","input":[{"role":"robot","content":"x"}]}""", 400, "input[0].role", null },
        { """{"model":"gpud-tiny","input":[{"type":"item_reference","id":"msg_1"}]}""", 400, "input[0].type", null },
        { """{"model":"gpud-tiny","input":[{"type":"function_call","name":"f","arguments":"{}"}]}""", 400, "input[0].call_id", null },
        { """{"model":"gpud-tiny","input":"x","tools":[{"type":"web_search"}]}""", 400, "tools[0].type", null },
        { """{"model":"gpud-tiny","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function","name":"g"}}""", 400, "tool_choice.name", null },
        { """{"model":"gpud-tiny","input":"x","text":{"format":{"type":"json_schema","name":"n","schema":{"type":"object","properties":{"a":{"not":{}}}}}}}""", 400, "text.format", "invalid_json_schema" },
        { """{"model":"gpud-tiny","input":"x","max_output_tokens":100000}""", 400, "max_output_tokens", "context_length_exceeded" },
        { """{"model":"no-such-model","input":"x"}""", 404, "model", "model_not_found" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task What_gpud_cannot_do_is_refused_naming_the_field(string body, int status, string param, string? code)
    {
        using var gpud = new GpudFactory();
        var response = await gpud.Client().PostAsync("/v1/responses", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        await response.AssertError((HttpStatusCode)status, param, code);
    }
}
