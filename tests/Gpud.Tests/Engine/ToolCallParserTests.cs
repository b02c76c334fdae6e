using Gpud.Engine.Templates;

namespace Gpud.Tests.Engine;

public sealed class ToolCallParserTests
{
    private static readonly HashSet<string> Tools = ["get_weather", "get_time"];

    [Theory]
    // Hermes / Qwen: blocks after optional text, several in one answer; a last block the model did not close.
    [InlineData("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>", null, "get_weather={\"city\": \"Oslo\"}")]
    [InlineData("Let me check.\n<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}</tool_call>\n<tool_call>{\"name\":\"get_time\",\"arguments\":{}}</tool_call>",
        "Let me check.", "get_weather={\"city\":\"Oslo\"}|get_time={}")]
    [InlineData("<tool_call>{\"name\": \"get_time\", \"arguments\": {\"zone\": \"UTC\"}}", null, "get_time={\"zone\": \"UTC\"}")]
    // Llama 3.1 / 3.2: a bare object with "parameters" (after <|python_tag|> when special tokens are kept), or several with ';'.
    [InlineData(" {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}", null, "get_weather={\"city\": \"Rome\"}")]
    [InlineData("<|python_tag|>{\"name\": \"get_time\", \"parameters\": {}}; {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}", null, "get_time={}|get_weather={\"city\": \"Rome\"}")]
    // Mistral: a list (its [TOOL_CALLS] token is special, so usually skipped), arguments possibly as a JSON string.
    [InlineData("[{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Kyiv\\\"}\"}]", null, "get_weather={\"city\": \"Kyiv\"}")]
    public void Calls_in_the_forms_open_models_write_are_read(string text, string? content, string calls)
    {
        var output = ToolCallParser.Parse(text, Tools);
        Assert.NotNull(output);
        Assert.Equal(content, output.Content);
        Assert.Equal(calls, string.Join("|", output.Calls.Select(c => $"{c.Name}={c.Arguments}")));
    }

    [Theory]
    [InlineData("It is sunny in Oslo.")]
    [InlineData("{\"name\": \"delete_everything\", \"arguments\": {}}")] // not one of the request's tools
    [InlineData("{\"city\": \"Oslo\", \"temp\": 4}")] // an answer in JSON, not a call
    [InlineData("<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": </tool_call>")] // broken JSON
    [InlineData("{\"name\": \"get_weather\", \"arguments\": {}} and then some prose")]
    public void Anything_else_stays_content(string text) => Assert.Null(ToolCallParser.Parse(text, Tools));

    [Fact]
    public void A_stream_never_sends_the_text_of_a_call_as_content()
    {
        var stream = new ToolCallStream(Tools);
        var sent = string.Concat(new[] { "Let me ", "check. <to", "ol_call>{\"name\": \"get_", "time\", \"arguments\": {}}</tool_call>" }.Select(stream.Push));
        var (rest, calls) = stream.Finish(complete: true);

        Assert.Equal("Let me check. ", sent + rest); // the text before the call, nothing of the call
        Assert.Equal("get_time", Assert.Single(calls).Name);
    }

    [Fact]
    public void Held_text_that_was_no_call_is_sent_as_content_at_the_end()
    {
        var stream = new ToolCallStream(Tools);
        var sent = string.Concat(new[] { "  ", "{\"a\":", " 1} <tool", "box>" }.Select(stream.Push));
        var (rest, calls) = stream.Finish(complete: true);

        Assert.Equal("", sent); // began like a JSON call, so nothing went out early
        Assert.Equal("  {\"a\": 1} <toolbox>", rest);
        Assert.Empty(calls);

        var cut = new ToolCallStream(Tools);
        cut.Push("<tool_call>{\"name\": \"get_time\", \"arguments\": {}}");
        Assert.Empty(cut.Finish(complete: false).Calls); // cut off by max_tokens: not a call the client could trust
    }
}
