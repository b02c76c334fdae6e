using System.Net.Http.Json;
using System.Text.Json;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>
/// A reasoning model's thinking (a leading &lt;think&gt; block) comes back apart from its answer: as
/// <c>reasoning_content</c> in chat completions and as a <c>reasoning</c> output item in the Responses API.
/// </summary>
public sealed class ReasoningTests : IClassFixture<ReasoningTests.TrainedModel>
{
    private readonly TrainedModel _trained;

    public ReasoningTests(TrainedModel trained) => _trained = trained;

    [Fact]
    public async Task Thinking_is_reasoning_content_in_chat_and_a_reasoning_item_in_responses_whole_and_streamed()
    {
        using var factory = _trained.Factory();
        var client = factory.Client();
        var chat = (await (await client.PostAsJsonAsync("/v1/chat/completions", new
        {
            model = TrainedModel.Adapter, messages = new[] { new { role = "user", content = "Think: 2+2?" } }, temperature = 0, max_tokens = 60,
        })).Json()).GetProperty("choices")[0].GetProperty("message");
        Assert.Equal(("add", "4"), (chat.GetProperty("reasoning_content").GetString(), chat.GetProperty("content").GetString()));

        var request = new Dictionary<string, object> { ["model"] = TrainedModel.Adapter, ["input"] = "Think: 2+2?", ["temperature"] = 0, ["max_output_tokens"] = 60 };
        var whole = await (await client.PostAsJsonAsync("/v1/responses", request)).Json();
        request["stream"] = true;
        var events = await (await client.PostAsJsonAsync("/v1/responses", request)).TypedEvents();
        foreach (var response in new[] { whole, events[^1].Data.GetProperty("response") })
        {
            var output = response.GetProperty("output").EnumerateArray().ToList();
            Assert.Equal(["reasoning", "message"], output.Select(o => o.GetProperty("type").GetString()));
            Assert.Equal("add", output[0].GetProperty("content")[0].GetProperty("text").GetString()!.Trim());
            Assert.Equal("4", output[1].GetProperty("content")[0].GetProperty("text").GetString());
        }
        // Streamed, the reasoning item takes its text and closes before the message opens.
        Assert.Equal("add", string.Concat(events.Where(e => e.Name == "response.reasoning_text.delta").Select(e => e.Data.GetProperty("delta").GetString())).Trim());
        var order = events.Select(e => e.Name).ToList();
        Assert.True(order.IndexOf("response.output_item.done") < order.IndexOf("response.output_text.delta"), string.Join(", ", order));

        // Without thinking (the template's empty block), there is no reasoning at all.
        var hi = await (await client.PostAsJsonAsync("/v1/responses", new { model = TrainedModel.Adapter, input = "Say hi", temperature = 0, max_output_tokens = 60 })).Json();
        var message = Assert.Single(hi.GetProperty("output").EnumerateArray().ToList());
        Assert.Equal(("message", "Hi!"), (message.GetProperty("type").GetString(), message.GetProperty("content")[0].GetProperty("text").GetString()));
    }

    /// <summary>The model and adapter of <see cref="Thinker"/>, trained once for the class.</summary>
    public sealed class TrainedModel() : TinyChatModel.Fixture(Base, Adapter, Thinker.Prepare)
    {
        public const string Base = "tiny-thinker";
        public const string Adapter = "tiny-thinker-lora";
    }
}
