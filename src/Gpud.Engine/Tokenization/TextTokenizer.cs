using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Gpud.Engine.Models;
using Microsoft.ML.Tokenizers;

namespace Gpud.Engine.Tokenization;

/// <summary>The tokenization algorithm a model directory uses.</summary>
public enum TokenizerKind
{
    /// <summary>GPT-2 style byte-level BPE with a pre-tokenizer regex (Llama 3, Qwen2/3).</summary>
    ByteLevelBpe,

    /// <summary>SentencePiece BPE with byte fallback (Llama 2, Mistral), from tokenizer.model or its tokenizer.json conversion.</summary>
    SentencePiece,
}

/// <summary>An added token of tokenizer.json (<c>added_tokens</c>): matched whole, never split by the model.</summary>
public sealed record AddedToken(int Id, string Content, bool Special);

/// <summary>
/// A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json, or a SentencePiece tokenizer.model) giving the
/// ids transformers gives: byte-level BPE on Microsoft.ML.Tokenizers, SentencePiece BPE on <see cref="MergeRankBpe"/>
/// (ML.Tokenizers' SentencePiece breaks merge ties differently from the reference library). Added tokens are matched by gpud itself so that
/// special-token text is turned into control tokens only when the caller asks for it (chat templates), never for
/// user-supplied content.
/// </summary>
public sealed class TextTokenizer
{
    private const string GptRegex = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly Tokenizer? _inner; // Microsoft.ML.Tokenizers' byte-level BPE; SentencePiece models use _mergeBpe
    private readonly IReadOnlyDictionary<string, int> _vocabulary;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly Regex? _allAdded;
    private readonly Regex? _nonSpecialAdded;
    private readonly int[] _prefix;
    private readonly int[] _suffix;
    private readonly string[]? _pieces; // SentencePiece: id -> piece, for decoding exactly as tokenizer.json's decoder does
    private readonly bool _stripLeadingSpace;
    private readonly MergeRankBpe? _mergeBpe; // SentencePiece-converted tokenizer.json
    private readonly PrependScheme _prepend; // when ▁ goes before a stretch of text (SentencePiece-style)
    private readonly bool _collapseWhitespace; // SentencePiece remove_extra_whitespaces
    private bool _cleanUpSpaces;

    private TextTokenizer(Tokenizer? inner, IReadOnlyDictionary<string, int> vocabulary, TokenizerKind kind, IReadOnlyList<AddedToken> added,
        int[] prefix, int[] suffix, int vocabSize, string[]? pieces = null, bool stripLeadingSpace = false, MergeRankBpe? mergeBpe = null,
        PrependScheme prepend = PrependScheme.Never, bool collapseWhitespace = false)
    {
        _inner = inner;
        _collapseWhitespace = collapseWhitespace;
        _vocabulary = vocabulary;
        _mergeBpe = mergeBpe;
        _prepend = prepend;
        _pieces = pieces;
        _stripLeadingSpace = stripLeadingSpace;
        Kind = kind;
        _addedByContent = added.GroupBy(a => a.Content, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        _addedById = added.GroupBy(a => a.Id).ToDictionary(g => g.Key, g => g.First());
        _allAdded = Alternation(added);
        _nonSpecialAdded = Alternation(added.Where(a => !a.Special));
        SpecialTokenPattern = Alternation(added.Where(a => a.Special));
        _prefix = prefix;
        _suffix = suffix;
        VocabSize = vocabSize;
    }

    public TokenizerKind Kind { get; }

    /// <summary>Largest token id + 1, added tokens included.</summary>
    public int VocabSize { get; }

    public string? BosToken { get; private set; }

    public int? BosTokenId { get; private set; }

    public string? EosToken { get; private set; }

    public int? EosTokenId { get; private set; }

    /// <summary>The Jinja <c>chat_template</c> of tokenizer_config.json, if any.</summary>
    public string? ChatTemplate { get; private set; }

    public IReadOnlyCollection<AddedToken> AddedTokens => _addedById.Values;

    /// <summary>Matches the text of any special token, longest first (null when there are none).</summary>
    internal Regex? SpecialTokenPattern { get; }

    /// <summary>The id of a token string (an added token or a vocabulary entry), or null.</summary>
    public int? TokenId(string token)
    {
        if (_addedByContent.TryGetValue(token, out var added)) return added.Id;
        return _vocabulary.TryGetValue(token, out var id) ? id : null;
    }

    public bool IsSpecial(int id) => _addedById.TryGetValue(id, out var token) && token.Special;

    /// <param name="addSpecialTokens">Add what the tokenizer's post-processor adds (e.g. BOS), as transformers' default does.</param>
    /// <param name="parseSpecialTokens">Turn special-token text into control tokens. Only for trusted text such as a
    /// rendered chat template; user content is always encoded with this false.</param>
    public IReadOnlyList<int> Encode(string text, bool addSpecialTokens = false, bool parseSpecialTokens = false) =>
        Encode(text, addSpecialTokens, parseSpecialTokens, null);

    /// <param name="restore">Applied to each stretch of text between added tokens before it is encoded (chat
    /// formatting puts neutralized special-token text back this way).</param>
    internal IReadOnlyList<int> Encode(string text, bool addSpecialTokens, bool parseSpecialTokens, Func<string, string>? restore)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + _prefix.Length + _suffix.Length);
        if (addSpecialTokens) ids.AddRange(_prefix);
        EncodeSplit(text, parseSpecialTokens ? _allAdded : _nonSpecialAdded, ids, (piece, atStart) => EncodePlain(piece, atStart, ids, restore));
        if (addSpecialTokens) ids.AddRange(_suffix);
        return ids;
    }

    /// <param name="cleanUpSpaces">transformers' <c>clean_up_tokenization_spaces</c> (" ." → "."); null uses
    /// tokenizer_config.json's setting. Generation leaves it off so streamed and whole text agree.</param>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true, bool? cleanUpSpaces = null)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var text = DecodeWindow(ids, skipSpecialTokens, atSequenceStart: true);
        return cleanUpSpaces ?? _cleanUpSpaces ? CleanUp(text) : text;
    }

    /// <summary>Decodes ids that may sit in the middle of a sequence (for streaming): no start-of-text stripping.</summary>
    internal string DecodeWindow(IEnumerable<int> ids, bool skipSpecialTokens, bool atSequenceStart)
    {
        if (_pieces is not null) return DecodePieces(ids, skipSpecialTokens, atSequenceStart);
        var text = new StringBuilder();
        var run = new List<int>();
        foreach (var id in ids)
        {
            if (_addedById.TryGetValue(id, out var added))
            {
                if (skipSpecialTokens && added.Special) continue;
                Flush();
                text.Append(added.Content);
                continue;
            }
            run.Add(id);
        }
        Flush();
        return text.ToString();

        void Flush()
        {
            if (run.Count == 0) return;
            text.Append(_inner!.Decode(run));
            run.Clear();
        }
    }

    /// <summary>tokenizer.json's SentencePiece decoder: ▁ → space, byte fallback, fuse, strip one leading space.</summary>
    private string DecodePieces(IEnumerable<int> ids, bool skipSpecialTokens, bool atSequenceStart)
    {
        var text = new StringBuilder();
        var bytes = new List<byte>();
        foreach (var id in ids)
        {
            if (skipSpecialTokens && IsSpecial(id)) continue;
            var piece = id >= 0 && id < _pieces!.Length ? _pieces[id] : "";
            if (piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[^1] == '>'
                && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out var b))
            {
                bytes.Add(b);
                continue;
            }
            FlushBytes();
            text.Append(piece.Replace('▁', ' '));
        }
        FlushBytes();
        if (atSequenceStart && _stripLeadingSpace && text.Length > 0 && text[0] == ' ') text.Remove(0, 1);
        return text.ToString();

        void FlushBytes()
        {
            if (bytes.Count == 0) return;
            try
            {
                text.Append(new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes.ToArray()));
            }
            catch (DecoderFallbackException)
            {
                text.Append('\uFFFD', bytes.Count); // as Hugging Face's ByteFallback decoder: one per byte
            }
            bytes.Clear();
        }
    }

    /// <summary>
    /// Each token's bytes as it adds them to decoded text (for constrained decoding): byte-level BPE tokens through
    /// GPT-2's byte-to-unicode table, SentencePiece pieces with ▁ as a space and &lt;0xNN&gt; as that byte, non-special
    /// added tokens as their UTF-8. Special tokens (and unused ids) are null: they add no text.
    /// </summary>
    public IReadOnlyList<byte[]?> TokenBytes()
    {
        var table = new byte[]?[VocabSize];
        var byteOf = Kind == TokenizerKind.ByteLevelBpe ? UnicodeToByte() : null;
        foreach (var (token, id) in _vocabulary)
        {
            if (id < 0 || id >= table.Length) continue;
            if (byteOf is not null)
            {
                var bytes = new byte[token.Length];
                var ok = true;
                for (var i = 0; i < token.Length && ok; i++) ok = byteOf.TryGetValue(token[i], out bytes[i]);
                table[id] = ok ? bytes : null;
            }
            else if (token.Length == 6 && token.StartsWith("<0x", StringComparison.Ordinal) && token[^1] == '>'
                     && byte.TryParse(token.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out var single))
            {
                table[id] = [single];
            }
            else
            {
                table[id] = Encoding.UTF8.GetBytes(token.Replace('▁', ' '));
            }
        }
        foreach (var added in _addedById.Values)
        {
            if (added.Id >= 0 && added.Id < table.Length) table[added.Id] = added.Special ? null : Encoding.UTF8.GetBytes(added.Content);
        }
        return table;
    }

    /// <summary>GPT-2's bytes_to_unicode, inverted: printable Latin-1 bytes stand for themselves, the rest for 256 + n.</summary>
    private static Dictionary<char, byte> UnicodeToByte()
    {
        var map = new Dictionary<char, byte>();
        var next = 0;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= '!' and <= '~' or >= '¡' and <= '¬' or >= '®' and <= 'ÿ';
            map[printable ? (char)b : (char)(256 + next++)] = (byte)b;
        }
        return map;
    }

    /// <summary>transformers' clean_up_tokenization.</summary>
    private static string CleanUp(string text) => text
        .Replace(" .", ".", StringComparison.Ordinal).Replace(" ?", "?", StringComparison.Ordinal)
        .Replace(" !", "!", StringComparison.Ordinal).Replace(" ,", ",", StringComparison.Ordinal)
        .Replace(" ' ", "'", StringComparison.Ordinal).Replace(" n't", "n't", StringComparison.Ordinal)
        .Replace(" 'm", "'m", StringComparison.Ordinal).Replace(" 's", "'s", StringComparison.Ordinal)
        .Replace(" 've", "'ve", StringComparison.Ordinal).Replace(" 're", "'re", StringComparison.Ordinal);

    /// <summary>Loads the tokenizer of a Hugging Face model directory.</summary>
    public static TextTokenizer Load(string directory)
    {
        var json = Path.Combine(directory, "tokenizer.json");
        var model = Path.Combine(directory, "tokenizer.model");
        var config = ReadConfig(Path.Combine(directory, "tokenizer_config.json"));
        TextTokenizer tokenizer;
        if (File.Exists(json))
        {
            try
            {
                using var document = JsonDocument.Parse(File.ReadAllBytes(json), new JsonDocumentOptions { MaxDepth = 256 });
                tokenizer = FromTokenizerJson(document.RootElement, json, config);
            }
            catch (JsonException e)
            {
                throw new ModelLoadException($"{json} is not valid JSON: {e.Message}", e);
            }
        }
        else if (File.Exists(model))
        {
            tokenizer = FromSentencePieceModel(SentencePieceModel.Read(model), model, config);
        }
        else
        {
            throw new ModelLoadException($"{directory}: no tokenizer.json or tokenizer.model.");
        }
        tokenizer.ApplyConfig(config);
        return tokenizer;
    }

    private static TextTokenizer FromTokenizerJson(JsonElement root, string path, TokenizerConfig? config)
    {
        var model = root.GetProperty("model");
        var type = model.TryGetProperty("type", out var t) ? t.GetString() : null;
        if (type != "BPE") throw new ModelLoadException($"{path}: tokenizer model type '{type}' is not supported (BPE).");

        var added = root.TryGetProperty("added_tokens", out var addedList)
            ? addedList.EnumerateArray().Select(a => new AddedToken(a.GetProperty("id").GetInt32(), a.GetProperty("content").GetString()!,
                a.TryGetProperty("special", out var s) && s.GetBoolean())).ToList()
            : [];
        var vocab = model.GetProperty("vocab").EnumerateObject().Select(p => new KeyValuePair<string, int>(p.Name, p.Value.GetInt32())).ToList();
        var vocabSize = Math.Max(vocab.Max(v => v.Value), added.Count == 0 ? 0 : added.Max(a => a.Id)) + 1;
        var (prefix, suffix) = PostProcessorTemplate(root, added, vocab, config);

        var byteFallback = model.TryGetProperty("byte_fallback", out var fb) && fb.ValueKind == JsonValueKind.True;
        if (byteFallback)
        {
            // SentencePiece converted to tokenizer.json (Llama 2, Mistral): merge-rank BPE with byte fallback.
            var pieces = new string[vocabSize];
            foreach (var (piece, id) in vocab) pieces[id] = piece;
            foreach (var a in added) pieces[a.Id] ??= a.Content;
            for (var i = 0; i < pieces.Length; i++) pieces[i] ??= $"<unused{i}>";
            var unknown = model.TryGetProperty("unk_token", out var unk) && unk.ValueKind == JsonValueKind.String
                ? vocab.FirstOrDefault(v => v.Key == unk.GetString()).Value
                : 0;
            var prepend = Prepend(root);
            var vocabulary = vocab.ToDictionary(v => v.Key, v => v.Value, StringComparer.Ordinal);
            return new TextTokenizer(null, vocabulary, TokenizerKind.SentencePiece, added, prefix, suffix, vocabSize, pieces,
                JsonContains(root.TryGetProperty("decoder", out var decoder) ? decoder : default, "Strip") || prepend != PrependScheme.Never,
                new MergeRankBpe(vocabulary, Merges(model), unknown), prepend);
        }

        var regex = SplitRegex(root.TryGetProperty("pre_tokenizer", out var preTokenizer) ? preTokenizer : default)
                    ?? throw new ModelLoadException($"{path}: a byte-level BPE tokenizer needs a ByteLevel or Split pre-tokenizer.");
        var merges = Merges(model).ToList();
        var options = new BpeOptions(vocab)
        {
            Merges = merges,
            ByteLevel = true,
            PreTokenizer = new RegexPreTokenizer(new Regex(regex, RegexOptions.Compiled), null),
            Normalizer = JsonContains(root.TryGetProperty("normalizer", out var normalizer) ? normalizer : default, "NFC") ? new NfcNormalizer() : null,
        };
        var bpe = BpeTokenizer.Create(options);
        return new TextTokenizer(bpe, bpe.Vocabulary, TokenizerKind.ByteLevelBpe, added, prefix, suffix, vocabSize);
    }

    private static TextTokenizer FromSentencePieceModel(SentencePieceModel spm, string path, TokenizerConfig? config)
    {
        if (!spm.IsBpe) throw new ModelLoadException($"{path}: only SentencePiece BPE models are supported (Llama 2, Mistral), not Unigram.");
        if (spm.NormalizerName != "identity")
            throw new ModelLoadException($"{path}: SentencePiece normalizer '{spm.NormalizerName}' is not supported (identity, as Llama 2 and Mistral use).");
        var pieces = spm.Pieces.Select(p => p.Piece).ToArray();
        var vocabulary = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var id = 0; id < pieces.Length; id++) vocabulary.TryAdd(pieces[id], id);
        var added = spm.Pieces.Select((p, id) => (p, id))
            .Where(x => x.p.Type is SentencePieceModel.Control or SentencePieceModel.Unknown or SentencePieceModel.UserDefined)
            .Select(x => new AddedToken(x.id, x.p.Piece, x.p.Type != SentencePieceModel.UserDefined))
            .ToList();
        var addBos = config?.AddBos ?? true;
        var addEos = config?.AddEos ?? false;
        var bpe = new MergeRankBpe(vocabulary, spm.Pieces.Select(p => (p.Piece, p.Score, p.Type == SentencePieceModel.Normal)).ToList(), spm.UnknownId);
        return new TextTokenizer(null, vocabulary, TokenizerKind.SentencePiece, added,
            addBos && spm.BosId >= 0 ? [spm.BosId] : [], addEos && spm.EosId >= 0 ? [spm.EosId] : [], pieces.Length, pieces,
            stripLeadingSpace: spm.AddDummyPrefix, mergeBpe: bpe, prepend: spm.AddDummyPrefix ? PrependScheme.Always : PrependScheme.Never,
            collapseWhitespace: spm.RemoveExtraWhitespaces);
    }

    /// <summary>Merges as "left right" strings (tokenizer.json stores them as strings or as two-element arrays).</summary>
    private static IEnumerable<string> Merges(JsonElement model) => model.GetProperty("merges").EnumerateArray()
        .Select(m => m.ValueKind == JsonValueKind.String ? m.GetString()! : $"{m[0].GetString()} {m[1].GetString()}");

    /// <summary>
    /// Encodes the stretches between <paramref name="splitter"/>'s added tokens with <paramref name="encodePiece"/>,
    /// telling it whether the stretch starts the text.
    /// </summary>
    private void EncodeSplit(string text, Regex? splitter, List<int> ids, Action<string, bool> encodePiece)
    {
        var start = 0;
        if (splitter is not null)
        {
            foreach (Match match in splitter.Matches(text))
            {
                if (match.Index > start) encodePiece(text[start..match.Index], start == 0);
                ids.Add(_addedByContent[match.Value].Id);
                start = match.Index + match.Length;
            }
        }
        if (start < text.Length) encodePiece(start == 0 ? text : text[start..], start == 0);
    }

    private void EncodePlain(string text, bool atStart, List<int> ids, Func<string, string>? restore)
    {
        if (restore is null)
        {
            EncodeText(text, atStart, ids);
            return;
        }
        // Restored text may hold special-token text again: it must stay text, but non-special added tokens still split.
        EncodeSplit(restore(text), _nonSpecialAdded, ids, (piece, first) => EncodeText(piece, atStart && first, ids));
    }

    /// <param name="atStart">Whether the text starts the input (nothing, not even an added token, before it).</param>
    private void EncodeText(string text, bool atStart, List<int> ids)
    {
        if (text.Length == 0) return;
        if (_mergeBpe is not null)
        {
            if (_collapseWhitespace) text = string.Join(' ', text.Split(' ', StringSplitOptions.RemoveEmptyEntries));
            var pieces = text.Replace(' ', '\u2581');
            var prepend = _prepend switch
            {
                PrependScheme.Always => true,
                PrependScheme.Metaspace => pieces[0] != '\u2581',
                PrependScheme.MetaspaceFirst => atStart && pieces[0] != '\u2581',
                _ => false,
            };
            _mergeBpe.Encode(prepend ? "\u2581" + pieces : pieces, ids);
            return;
        }
        ids.AddRange(_inner!.EncodeToIds(text));
    }

    /// <summary>When a SentencePiece-style tokenizer puts ▁ before a stretch of text between added tokens.</summary>
    internal enum PrependScheme
    {
        Never,

        /// <summary>Before every stretch: SentencePiece's add_dummy_prefix, or tokenizer.json's Prepend("▁") normalizer (legacy conversions, Llama 2).</summary>
        Always,

        /// <summary>A Metaspace pre-tokenizer with prepend_scheme "always": before every stretch that does not start with ▁ (a space) already.</summary>
        Metaspace,

        /// <summary>prepend_scheme "first" (transformers' non-legacy conversions, Mistral v0.3): only before the stretch that starts the input.</summary>
        MetaspaceFirst,
    }

    /// <summary>tokenizer.json's prepend rule: a Prepend normalizer, or a Metaspace pre-tokenizer's prepend_scheme (add_prefix_space before tokenizers 0.15).</summary>
    private static PrependScheme Prepend(JsonElement root)
    {
        if (JsonContains(root.TryGetProperty("normalizer", out var normalizer) ? normalizer : default, "\"Prepend\"")) return PrependScheme.Always;
        if (!root.TryGetProperty("pre_tokenizer", out var preTokenizer) || FindByType(preTokenizer, "Metaspace") is not { } metaspace)
            return PrependScheme.Never;
        if (metaspace.TryGetProperty("prepend_scheme", out var scheme) && scheme.ValueKind == JsonValueKind.String)
        {
            return scheme.GetString() switch
            {
                "first" => PrependScheme.MetaspaceFirst,
                "never" => PrependScheme.Never,
                _ => PrependScheme.Metaspace,
            };
        }
        return metaspace.TryGetProperty("add_prefix_space", out var add) && add.ValueKind == JsonValueKind.False ? PrependScheme.Never : PrependScheme.Metaspace;
    }

    /// <summary>The component of <paramref name="type"/> in a tokenizer.json pipeline entry, itself or inside a Sequence.</summary>
    private static JsonElement? FindByType(JsonElement element, string type)
    {
        if (element.ValueKind != JsonValueKind.Object) return null;
        if (element.TryGetProperty("type", out var t) && t.GetString() == type) return element;
        foreach (var list in new[] { "pretokenizers", "normalizers", "decoders" })
        {
            if (!element.TryGetProperty(list, out var items) || items.ValueKind != JsonValueKind.Array) continue;
            foreach (var item in items.EnumerateArray())
                if (FindByType(item, type) is { } found) return found;
        }
        return null;
    }

    private void ApplyConfig(TokenizerConfig? config)
    {
        if (config is null) return;
        ChatTemplate = config.ChatTemplate;
        _cleanUpSpaces = config.CleanUpSpaces ?? false;
        BosToken = config.BosToken;
        EosToken = config.EosToken;
        BosTokenId = config.BosToken is null ? null : TokenId(config.BosToken);
        EosTokenId = config.EosToken is null ? null : TokenId(config.EosToken);
    }

    /// <summary>Special tokens the post-processor puts around a single sequence (TemplateProcessing's <c>single</c>).</summary>
    private static (int[] Prefix, int[] Suffix) PostProcessorTemplate(JsonElement root, List<AddedToken> added, List<KeyValuePair<string, int>> vocab, TokenizerConfig? config)
    {
        if (!root.TryGetProperty("post_processor", out var processor) || processor.ValueKind != JsonValueKind.Object)
            return ([], []);
        var template = processor.GetProperty("type").GetString() == "Sequence"
            ? processor.GetProperty("processors").EnumerateArray().FirstOrDefault(p => p.GetProperty("type").GetString() == "TemplateProcessing")
            : processor;
        if (template.ValueKind != JsonValueKind.Object || template.GetProperty("type").GetString() != "TemplateProcessing") return ([], []);

        var ids = template.TryGetProperty("special_tokens", out var specials)
            ? specials.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetProperty("ids")[0].GetInt32(), StringComparer.Ordinal)
            : new Dictionary<string, int>(StringComparer.Ordinal);
        var prefix = new List<int>();
        var suffix = new List<int>();
        var seenSequence = false;
        foreach (var piece in template.GetProperty("single").EnumerateArray())
        {
            if (piece.TryGetProperty("Sequence", out _))
            {
                seenSequence = true;
                continue;
            }
            var name = piece.GetProperty("SpecialToken").GetProperty("id").GetString()!;
            var id = ids.TryGetValue(name, out var known) ? known
                : added.FirstOrDefault(a => a.Content == name)?.Id ?? vocab.First(v => v.Key == name).Value;
            (seenSequence ? suffix : prefix).Add(id);
        }
        // transformers lets tokenizer_config.json switch BOS/EOS off (add_bos_token/add_eos_token) over the template.
        if (config?.AddBos == false && config.BosToken is { } bos) prefix.RemoveAll(id => id == (added.FirstOrDefault(a => a.Content == bos)?.Id ?? -1));
        if (config?.AddEos == false && config.EosToken is { } eos) suffix.RemoveAll(id => id == (added.FirstOrDefault(a => a.Content == eos)?.Id ?? -1));
        return (prefix.ToArray(), suffix.ToArray());
    }

    private static string? SplitRegex(JsonElement preTokenizer)
    {
        if (preTokenizer.ValueKind != JsonValueKind.Object) return null;
        switch (preTokenizer.GetProperty("type").GetString())
        {
            case "ByteLevel":
                return preTokenizer.TryGetProperty("use_regex", out var useRegex) && useRegex.ValueKind == JsonValueKind.False ? null : GptRegex;
            case "Split":
                return preTokenizer.GetProperty("pattern").TryGetProperty("Regex", out var regex) ? regex.GetString() : null;
            case "Sequence":
                foreach (var inner in preTokenizer.GetProperty("pretokenizers").EnumerateArray())
                {
                    if (SplitRegex(inner) is { } found) return found;
                }
                return null;
            default:
                return null;
        }
    }

    private static bool JsonContains(JsonElement element, string text) =>
        element.ValueKind != JsonValueKind.Undefined && element.GetRawText().Contains(text, StringComparison.Ordinal);

    private static Regex? Alternation(IEnumerable<AddedToken> tokens)
    {
        var contents = tokens.Select(t => t.Content).Where(c => c.Length > 0).Distinct(StringComparer.Ordinal)
            .OrderByDescending(c => c.Length).Select(Regex.Escape).ToList();
        return contents.Count == 0 ? null : new Regex(string.Join('|', contents), RegexOptions.Compiled | RegexOptions.CultureInvariant);
    }

    private static TokenizerConfig? ReadConfig(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            using var document = JsonDocument.Parse(File.ReadAllBytes(path));
            var root = document.RootElement;
            static string? TokenText(JsonElement root, string key) =>
                !root.TryGetProperty(key, out var v) ? null
                : v.ValueKind == JsonValueKind.String ? v.GetString()
                : v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) ? c.GetString()
                : null;
            static bool? Flag(JsonElement root, string key) =>
                root.TryGetProperty(key, out var v) && v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : null;
            var template = root.TryGetProperty("chat_template", out var ct) && ct.ValueKind == JsonValueKind.String ? ct.GetString() : null;
            return new TokenizerConfig(TokenText(root, "bos_token"), TokenText(root, "eos_token"), Flag(root, "add_bos_token"), Flag(root, "add_eos_token"),
                Flag(root, "clean_up_tokenization_spaces"), template);
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{path} is not valid JSON: {e.Message}", e);
        }
    }

    private sealed record TokenizerConfig(string? BosToken, string? EosToken, bool? AddBos, bool? AddEos, bool? CleanUpSpaces, string? ChatTemplate);

    private sealed class NfcNormalizer : Normalizer
    {
        public override string Normalize(string original) => original.Normalize(NormalizationForm.FormC);

        public override string Normalize(ReadOnlySpan<char> original) => original.ToString().Normalize(NormalizationForm.FormC);
    }
}
