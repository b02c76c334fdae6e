using System.Text;
using Gpud.Engine.Data;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Engine;

public sealed class TrainingDataInspectorTests
{
    private const string Good = """{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}""";

    [Fact]
    public void Chat_examples_with_tools_weights_and_text_parts_are_accepted()
    {
        var file = string.Join('\n',
            Good,
            """{"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"}]},{"role":"assistant","content":"x","weight":0},{"role":"user","content":"again"},{"role":"assistant","content":"y","weight":1}]}""",
            """{"messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"w","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"sunny"},{"role":"assistant","content":"Sunny."}],"tools":[]}""",
            "") + "\r\n";

        var result = TrainingDataInspector.Inspect(Encoding.UTF8.GetBytes("\uFEFF" + file));

        Assert.True(result.IsValid, result.Error?.ToString());
        Assert.Equal((TrainingDataFormat.Chat, 3), (result.Format!.Value, result.ExampleCount));
    }

    [Fact]
    public void Prompt_completion_examples_are_accepted()
    {
        var result = TrainingDataInspector.Inspect("""
            {"prompt":"2+2=","completion":" 4"}
            {"prompt":"3+3=","completion":" 6"}
            """u8);
        Assert.True(result.IsValid);
        Assert.Equal((TrainingDataFormat.PromptCompletion, 2), (result.Format!.Value, result.ExampleCount));
    }

    [Fact]
    public void Preference_examples_with_tools_and_a_multi_turn_input_are_accepted()
    {
        var result = TrainingDataInspector.Inspect("""
            {"input":{"messages":[{"role":"user","content":"Hi"}]},"preferred_output":[{"role":"assistant","content":"Hello!"}],"non_preferred_output":[{"role":"assistant","content":"What?"}]}
            {"input":{"messages":[{"role":"system","content":"s"},{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"w"}}],"parallel_tool_calls":true},"preferred_output":[{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"w","arguments":"{}"}}]}],"non_preferred_output":[{"role":"assistant","content":"No idea."}]}
            """u8);
        Assert.True(result.IsValid, result.Error?.ToString());
        Assert.Equal((TrainingDataFormat.Preference, 2), (result.Format!.Value, result.ExampleCount));
    }

    private const string Pair = """{"input":{"messages":[{"role":"user","content":"Hi"}]},"preferred_output":[{"role":"assistant","content":"Hello!"}],"non_preferred_output":[{"role":"assistant","content":"What?"}]}""";

    [Theory]
    [InlineData("""{"input":{"messages":[{"role":"user","content":"Hi"}]},"preferred_output":[{"role":"assistant","content":"A"}]}""", "missing_non_preferred_output")]
    [InlineData("""{"input":{"messages":[{"role":"user","content":"Hi"}]},"preferred_output":[],"non_preferred_output":[{"role":"assistant","content":"B"}]}""", "invalid_preferred_output")]
    [InlineData("""{"input":{"messages":[{"role":"user","content":"Hi"}]},"preferred_output":[{"role":"assistant","content":"A"}],"non_preferred_output":[{"role":"user","content":"B"}]}""", "invalid_non_preferred_output")]
    [InlineData("""{"input":{"messages":[{"role":"user","content":"Hi"}]},"preferred_output":[{"role":"assistant","content":""}],"non_preferred_output":[{"role":"assistant","content":"B"}]}""", "missing_content")]
    [InlineData("""{"input":{"messages":[{"role":"user","content":"Hi"},{"role":"assistant","content":"A"}]},"preferred_output":[{"role":"assistant","content":"A"}],"non_preferred_output":[{"role":"assistant","content":"B"}]}""", "invalid_input")]
    [InlineData("""{"input":"Hi","preferred_output":[{"role":"assistant","content":"A"}],"non_preferred_output":[{"role":"assistant","content":"B"}]}""", "invalid_input")]
    [InlineData("""{"input":{"messages":[]},"preferred_output":[{"role":"assistant","content":"A"}],"non_preferred_output":[{"role":"assistant","content":"B"}]}""", "missing_messages_list")]
    [InlineData("""{"input":{"messages":[{"role":"user","content":"Hi"}]},"preferred_output":[{"role":"assistant","content":"A"}],"non_preferred_output":[{"role":"assistant","content":"B"}],"score":1}""", "unrecognized_key")]
    [InlineData("""{"input":{"messages":[{"role":"user","content":"Hi"}]},"preferred_output":[{"role":"assistant","content":"A","weight":1}],"non_preferred_output":[{"role":"assistant","content":"B"}]}""", "invalid_weight")]
    [InlineData(Good, "inconsistent_format")]
    public void The_first_bad_preference_line_is_named(string badLine, string code)
    {
        var error = TrainingDataInspector.Inspect(Encoding.UTF8.GetBytes($"{Pair}\n{badLine}\n{Pair}\n")).Error;

        Assert.NotNull(error);
        Assert.Equal((2, code), (error.Line, error.Code));
    }

    [Theory]
    [InlineData("""not json""", "invalid_json")]
    [InlineData("""[1,2]""", "data_type")]
    [InlineData("""{"text":"x"}""", "missing_messages_list")]
    [InlineData("""{"messages":[]}""", "missing_messages_list")]
    [InlineData("""{"messages":[{"content":"x"},{"role":"assistant","content":"y"}]}""", "message_missing_key")]
    [InlineData("""{"messages":[{"role":"user"},{"role":"assistant","content":"y"}]}""", "message_missing_key")]
    [InlineData("""{"messages":[{"role":"user","content":"x","mood":"happy"},{"role":"assistant","content":"y"}]}""", "message_unrecognized_key")]
    [InlineData("""{"messages":[{"role":"narrator","content":"x"},{"role":"assistant","content":"y"}]}""", "unrecognized_role")]
    [InlineData("""{"messages":[{"role":"user","content":""},{"role":"assistant","content":"y"}]}""", "missing_content")]
    [InlineData("""{"messages":[{"role":"user","content":7},{"role":"assistant","content":"y"}]}""", "missing_content")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}]}""", "example_missing_assistant_message")]
    [InlineData("""{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y","weight":2}]}""", "invalid_weight")]
    [InlineData("""{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}],"tools":{"type":"function"}}""", "invalid_tools")]
    [InlineData("""{"messages":[{"role":"user","content":"x"},{"role":"assistant","content":"y"}],"tools":[{"type":"function","function":{"parameters":{}}}]}""", "invalid_tools")]
    [InlineData("""{"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":{"a":1}}}]}]}""", "invalid_tool_calls")]
    [InlineData("""{"prompt":"x","completion":""}""", "invalid_completion")]
    [InlineData("""{"prompt":"x","completion":"y"}""", "inconsistent_format")]
    public void The_first_bad_line_is_named_with_its_cookbook_error_class(string badLine, string code)
    {
        var file = $"{Good}\n\n{Good}\n{badLine}\n{Good}\nalso bad\n";

        var error = TrainingDataInspector.Inspect(Encoding.UTF8.GetBytes(file)).Error;

        Assert.NotNull(error);
        Assert.Equal(4, error.Line); // 1-based, blank lines counted as a text editor shows them
        Assert.Equal(code, error.Code);
        Assert.StartsWith($"Line 4: {code}: ", error.ToString());
    }

    [Fact]
    public void An_empty_file_is_an_error()
    {
        Assert.Equal("empty_file", TrainingDataInspector.Inspect("\n  \n"u8).Error?.Code);
    }

    [Fact]
    public void Chunk_boundaries_do_not_change_the_result()
    {
        var bytes = Encoding.UTF8.GetBytes(Requests.ChatJsonl(30) + """{"messages":[{"role":"user","content":"é"}]}""" + "\n" + Good);
        var whole = TrainingDataInspector.Inspect(bytes);

        foreach (var size in new[] { 1, 2, 3, 7, 64 })
        {
            var inspector = new TrainingDataInspector();
            for (var i = 0; i < bytes.Length; i += size)
                inspector.Append(bytes.AsSpan(i, Math.Min(size, bytes.Length - i)));
            Assert.Equal(whole, inspector.Complete());
        }
        Assert.Equal((31, "example_missing_assistant_message"), (whole.Error!.Line, whole.Error.Code));
    }
}
