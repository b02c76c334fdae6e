using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>
/// Function calling end to end: gpud-tiny with a tool-aware chat template (Hermes-style <c>&lt;tool_call&gt;</c> blocks, as
/// Qwen writes them) is fine-tuned on OpenAI-format function-calling examples, then asked through
/// <c>/v1/chat/completions</c> with <c>tools</c>; its call must come back as <c>tool_calls</c>, streamed or not.
/// </summary>
public sealed class ToolCallingTests : IClassFixture<ToolCallingTests.TrainedModel>
{
    private readonly TrainedModel _trained;

    public ToolCallingTests(TrainedModel trained) => _trained = trained;

    private static readonly object[] Tools = ToolCaller.Tools;

    private static object Ask(string question, bool stream = false, object? toolChoice = null, bool parallel = true) => new
    {
        model = TrainedModel.Adapter,
        messages = new[] { new { role = "user", content = question } },
        tools = Tools,
        tool_choice = toolChoice ?? "auto",
        parallel_tool_calls = parallel,
        temperature = 0,
        max_tokens = 200,
        stream,
    };

    [Fact]
    public async Task A_call_the_model_makes_comes_back_as_tool_calls()
    {
        using var factory = _trained.Factory();
        var response = await factory.Client().PostAsJsonAsync("/v1/chat/completions", Ask("Weather in Oslo?"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var choice = (await response.Json()).GetProperty("choices")[0];
        Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
        var message = choice.GetProperty("message");
        Assert.Equal(JsonValueKind.Null, message.GetProperty("content").ValueKind);
        var call = Assert.Single(message.GetProperty("tool_calls").EnumerateArray().ToList());
        Assert.StartsWith("call_", call.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.Equal("function", call.GetProperty("type").GetString());
        Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
        using var arguments = JsonDocument.Parse(call.GetProperty("function").GetProperty("arguments").GetString()!);
        Assert.Equal("Oslo", arguments.RootElement.GetProperty("city").GetString());

        // Without the tools (tool_choice "none") nothing is read as a call.
        var plain = await factory.Client().PostAsJsonAsync("/v1/chat/completions", Ask("Weather in Oslo?", toolChoice: "none"));
        var plainChoice = (await plain.Json()).GetProperty("choices")[0];
        Assert.NotEqual("tool_calls", plainChoice.GetProperty("finish_reason").GetString());
        Assert.False(plainChoice.GetProperty("message").TryGetProperty("tool_calls", out _));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Two_calls_in_one_answer_come_back_in_order_unless_parallel_tool_calls_is_false(bool stream)
    {
        using var factory = _trained.Factory();
        var client = factory.Client();
        async Task<List<string>> Cities(bool parallel)
        {
            var response = await client.PostAsJsonAsync("/v1/chat/completions", Ask("Weather in Oslo and Rome?", stream, parallel: parallel));
            IEnumerable<JsonElement> calls;
            if (stream)
            {
                var deltas = (await response.Events()).Select(e => e.GetProperty("choices")[0]).ToList();
                calls = deltas.SelectMany(d => d.GetProperty("delta").TryGetProperty("tool_calls", out var c) ? c.EnumerateArray() : []);
                Assert.Equal("tool_calls", deltas[^1].GetProperty("finish_reason").GetString());
            }
            else
            {
                calls = (await response.Json()).GetProperty("choices")[0].GetProperty("message").GetProperty("tool_calls").EnumerateArray();
            }
            return calls.Select(c => JsonDocument.Parse(c.GetProperty("function").GetProperty("arguments").GetString()!).RootElement.GetProperty("city").GetString()!).ToList();
        }

        Assert.Equal(["Oslo", "Rome"], await Cities(parallel: true));
        Assert.Equal(["Oslo"], await Cities(parallel: false));
    }

    [Fact]
    public async Task A_streamed_call_arrives_as_a_tool_calls_delta_and_never_as_content()
    {
        using var factory = _trained.Factory();
        var response = await factory.Client().PostAsJsonAsync("/v1/chat/completions", Ask("Weather in Oslo?", stream: true));
        var deltas = (await response.Events()).Select(c => c.GetProperty("choices")[0]).ToList();

        var content = string.Concat(deltas.Select(d => d.GetProperty("delta").TryGetProperty("content", out var c) ? c.GetString() : ""));
        Assert.Equal("", content);
        var call = Assert.Single(deltas, d => d.GetProperty("delta").TryGetProperty("tool_calls", out _)).GetProperty("delta").GetProperty("tool_calls")[0];
        Assert.Equal(0, call.GetProperty("index").GetInt32());
        Assert.Equal("get_weather", call.GetProperty("function").GetProperty("name").GetString());
        Assert.Equal("tool_calls", deltas[^1].GetProperty("finish_reason").GetString());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Tool_choice_required_or_named_forces_a_call_even_where_the_model_would_answer_in_text(bool stream)
    {
        using var factory = _trained.Factory();
        var client = factory.Client();
        async Task<(string? FinishReason, string Content, List<(string Name, JsonElement Arguments)> Calls)> AskAsync(string question, object choice, bool parallel = true)
        {
            var response = await client.PostAsJsonAsync("/v1/chat/completions", Ask(question, stream, choice, parallel));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            if (!stream)
            {
                var answer = (await response.Json()).GetProperty("choices")[0];
                var message = answer.GetProperty("message");
                var calls = message.TryGetProperty("tool_calls", out var list)
                    ? list.EnumerateArray().Select(c => (c.GetProperty("function").GetProperty("name").GetString()!, JsonDocument.Parse(c.GetProperty("function").GetProperty("arguments").GetString()!).RootElement)).ToList()
                    : [];
                return (answer.GetProperty("finish_reason").GetString(), message.GetProperty("content").GetString() ?? "", calls);
            }
            var deltas = (await response.Events()).Select(e => e.GetProperty("choices")[0]).ToList();
            var streamed = deltas.Where(d => d.GetProperty("delta").TryGetProperty("tool_calls", out _))
                .SelectMany(d => d.GetProperty("delta").GetProperty("tool_calls").EnumerateArray())
                .Select(c => (c.GetProperty("function").GetProperty("name").GetString()!, JsonDocument.Parse(c.GetProperty("function").GetProperty("arguments").GetString()!).RootElement)).ToList();
            return (deltas[^1].GetProperty("finish_reason").GetString(), string.Concat(deltas.Select(d => d.GetProperty("delta").TryGetProperty("content", out var c) ? c.GetString() : "")), streamed);
        }

        // Trained to answer "Say hi" in text (see ToolCaller), the model must still call.
        var auto = await AskAsync("Say hi", "auto");
        Assert.Empty(auto.Calls);
        var required = await AskAsync("Say hi", "required");
        Assert.Equal(("tool_calls", ""), (required.FinishReason, required.Content));
        Assert.NotEmpty(required.Calls);
        foreach (var (name, arguments) in required.Calls)
        {
            Assert.Contains(name, new[] { "get_weather", "get_time" });
            Assert.Equal(JsonValueKind.Object, arguments.ValueKind);
            if (name == "get_weather") Assert.All(arguments.EnumerateObject(), p => Assert.Equal(("city", JsonValueKind.String), (p.Name, p.Value.ValueKind)));
        }

        // A named function is called, once, whatever the question.
        var named = await AskAsync("Weather in Oslo and Rome?", new { type = "function", function = new { name = "get_time" } });
        Assert.Equal("tool_calls", named.FinishReason);
        Assert.Equal("get_time", Assert.Single(named.Calls).Name);
        var weather = Assert.Single((await AskAsync("Say hi", new { type = "function", function = new { name = "get_weather" } })).Calls);
        Assert.Equal("get_weather", weather.Name);
        Assert.All(weather.Arguments.EnumerateObject(), p => Assert.Equal(("city", JsonValueKind.String), (p.Name, p.Value.ValueKind)));
        var single = await AskAsync("Weather in Oslo and Rome?", "required", parallel: false);
        Assert.Single(single.Calls);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task The_responses_api_returns_calls_as_function_call_items_and_takes_their_outputs_back(bool stream)
    {
        using var factory = _trained.Factory();
        var client = factory.Client();
        // The Responses API's flat function tools.
        var tools = new object[]
        {
            new { type = "function", name = "get_weather", description = "Weather in a city", parameters = new { type = "object", properties = new { city = new { type = "string" } } } },
            new { type = "function", name = "get_time", parameters = new { type = "object", properties = new { } } },
        };
        var http = await client.PostAsJsonAsync("/v1/responses", new { model = TrainedModel.Adapter, input = "Weather in Oslo?", tools, temperature = 0, max_output_tokens = 200, stream });
        var response = stream ? (await http.TypedEvents())[^1].Data.GetProperty("response") : await http.Json();
        Assert.Equal("completed", response.GetProperty("status").GetString());
        var call = Assert.Single(response.GetProperty("output").EnumerateArray().ToList()); // no message: the answer is the call
        Assert.Equal(("function_call", "get_weather", "completed"), (call.GetProperty("type").GetString(), call.GetProperty("name").GetString(), call.GetProperty("status").GetString()));
        Assert.StartsWith("fc_", call.GetProperty("id").GetString(), StringComparison.Ordinal);
        Assert.StartsWith("call_", call.GetProperty("call_id").GetString(), StringComparison.Ordinal);
        using (var arguments = JsonDocument.Parse(call.GetProperty("arguments").GetString()!)) Assert.Equal("Oslo", arguments.RootElement.GetProperty("city").GetString());

        // The client runs the function and sends the call and its output back, as the SDKs' examples do.
        var followUp = await client.PostAsJsonAsync("/v1/responses", new
        {
            model = TrainedModel.Adapter, tools, temperature = 0, max_output_tokens = 5,
            input = new object[]
            {
                new { role = "user", content = "Weather in Oslo?" },
                new { type = "function_call", call_id = call.GetProperty("call_id").GetString(), name = "get_weather", arguments = call.GetProperty("arguments").GetString() },
                new { type = "function_call_output", call_id = call.GetProperty("call_id").GetString(), output = "{\"temp\": 4}" },
            },
        });
        Assert.Equal(HttpStatusCode.OK, followUp.StatusCode);

        // "Say hi" is answered in text: one message, no reasoning item for the template's empty <think> block.
        var hi = await (await client.PostAsJsonAsync("/v1/responses", new { model = TrainedModel.Adapter, input = "Say hi", tools, temperature = 0, max_output_tokens = 200 })).Json();
        var message = Assert.Single(hi.GetProperty("output").EnumerateArray().ToList());
        Assert.Equal("Hi!", message.GetProperty("content")[0].GetProperty("text").GetString());
    }

    [Fact]
    public async Task An_answer_that_calls_nothing_is_plain_content_and_a_tool_result_conversation_renders()
    {
        using var factory = _trained.Factory();
        var client = factory.Client();
        var hi = (await (await client.PostAsJsonAsync("/v1/chat/completions", Ask("Say hi"))).Json()).GetProperty("choices")[0];
        Assert.Equal("stop", hi.GetProperty("finish_reason").GetString());
        Assert.Equal("Hi!", hi.GetProperty("message").GetProperty("content").GetString()); // the empty <think> block is no content
        Assert.False(hi.GetProperty("message").TryGetProperty("reasoning_content", out _)); // nor reasoning

        // The client sends the call back with its result, as the SDKs do (content null, arguments a JSON string).
        var followUp = await client.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = TrainedModel.Adapter,
            tools = Tools,
            max_tokens = 5,
            messages = new object[]
            {
                new { role = "user", content = "Weather in Oslo?" },
                new { role = "assistant", content = (string?)null, tool_calls = new[] { new { id = "call_1", type = "function", function = new { name = "get_weather", arguments = "{\"city\":\"Oslo\"}" } } } },
                new { role = "tool", tool_call_id = "call_1", content = "{\"temp\": 4}" },
            },
        });
        Assert.Equal(HttpStatusCode.OK, followUp.StatusCode);
    }

    public static TheoryData<string, string, string?> BadRequests => new()
    {
        { """{"tools":{"type":"function"}}""", "tools", "invalid_type" },
        { """{"tools":[{"type":"retrieval"}]}""", "tools[0].type", null },
        { """{"tools":[{"type":"function","function":{"name":"has space"}}]}""", "tools[0].function.name", null },
        { """{"tool_choice":"auto"}""", "tool_choice", null },
        { """{"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}""", "tool_choice.function.name", null },
        { """{"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function"}}""", "tool_choice", null },
        { """{"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"at":{"type":"string","format":"json-pointer"}}}}}],"tool_choice":"required"}""", "tools[0].function.parameters", "invalid_json_schema" },
        { """{"functions":[{"name":"f"}]}""", "functions", "unsupported_parameter" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Malformed_tool_requests_are_refused_naming_the_field(string fields, string param, string? code)
    {
        using var factory = _trained.Factory();
        var body = JsonNode.Parse(fields)!.AsObject();
        body["model"] = TrainedModel.Adapter;
        body["messages"] = JsonNode.Parse("""[{"role":"user","content":"Weather in Oslo?"}]""");
        var response = await factory.Client().PostAsync("/v1/chat/completions", new StringContent(body.ToJsonString(), System.Text.Encoding.UTF8, "application/json"));
        await response.AssertError(HttpStatusCode.BadRequest, param, code);
    }

    /// <summary>The model and adapter of <see cref="ToolCaller"/>, trained once for the class.</summary>
    public sealed class TrainedModel() : TinyChatModel.Fixture(Base, Adapter, ToolCaller.Prepare)
    {
        public const string Base = "tiny-tools";
        public const string Adapter = "tiny-tools-caller";
    }
}
