using Gpud.Engine.Templates;

namespace Gpud.Tests.Engine;

public sealed class ChatAnswerStreamTests
{
    [Theory]
    [InlineData("<think>\n\n</think>\n\nParis", null, "Paris")] // the empty block a Qwen3 fine-tune writes before each answer
    [InlineData("<think>\nThe capital of France.\n</think>\n\nParis", "The capital of France.", "Paris")]
    [InlineData("Paris", null, "Paris")]
    [InlineData("<think>\nStill thinking", "Still thinking", "")] // cut off inside the block: all reasoning
    [InlineData("Use <think> tags", null, "Use <think> tags")] // not at the start: content
    public void A_leading_reasoning_block_is_split_from_the_content(string text, string? reasoning, string content)
    {
        var answer = ChatAnswerStream.Read(text, reasons: true, tools: null, complete: true);
        Assert.Equal(reasoning, answer.Reasoning);
        Assert.Equal(content, answer.Content);
        Assert.Equal(text, ChatAnswerStream.Read(text, reasons: false, tools: null, complete: true).Content); // other templates: untouched
    }

    [Fact]
    public void Streamed_pieces_give_the_same_reasoning_and_content_and_never_a_piece_of_a_marker()
    {
        string[] pieces = ["<th", "ink>\nHmm, ", "France.</thi", "nk>", "\n\n", "Par", "is"];
        var stream = new ChatAnswerStream(reasons: true, tools: null);
        var sent = pieces.Select(stream.Push).ToList();
        var end = stream.Finish(complete: true);

        Assert.Equal("Hmm, France.", string.Concat(sent.Select(s => s.Reasoning)) + end.Reasoning);
        Assert.Equal("Paris", string.Concat(sent.Select(s => s.Content)) + end.Content);
        Assert.All(sent, s => Assert.DoesNotContain("<", s.Reasoning + s.Content, StringComparison.Ordinal));
    }

    [Fact]
    public void A_call_after_the_reasoning_block_is_a_call()
    {
        var answer = ChatAnswerStream.Read("<think>\n\n</think>\n\n<tool_call>{\"name\": \"get_time\", \"arguments\": {}}</tool_call>",
            reasons: true, tools: new HashSet<string> { "get_time" }, complete: true);
        Assert.Equal("get_time", Assert.Single(answer.Calls).Name);
        Assert.Equal("", answer.Content);
        Assert.Null(answer.Reasoning);
    }
}
