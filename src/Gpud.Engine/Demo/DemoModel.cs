using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Engine.IO;
using Gpud.Engine.Weights;

namespace Gpud.Engine.Demo;

/// <summary>
/// <c>gpud-tiny</c>: a small Llama-architecture model that exists on any machine without a download, written in real
/// Hugging Face format (config.json, model.safetensors, tokenizer.json, tokenizer_config.json) the first time it is
/// needed. Its weights come from a fixed-seed generator, so every machine creates the same bytes. It exercises the
/// mechanics (loading, tokenizing, chat templates, LoRA training, serving) in seconds on a CPU; it is not a language
/// model and produces no meaningful text until fine-tuned.
/// </summary>
public static class DemoModel
{
    public const string Name = "gpud-tiny";

    /// <summary>Bump when the generated files change, so existing copies are regenerated.</summary>
    public const int Version = 2;

    private const int Hidden = 64;
    private const int Intermediate = 176;
    private const int Layers = 4;
    private const int Heads = 4;
    private const int KvHeads = 2;
    private const int MaxPositions = 2048;
    private const ulong Seed = 0x6770_7564_2D74_696EUL; // "gpud-tin"

    /// <summary>Special tokens after the 256 byte tokens, in Llama 3's spelling so its chat template applies.</summary>
    private static readonly string[] Specials =
        ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|pad|>", "<|reserved_0|>", "<|reserved_1|>"];

    public static int VocabSize => 256 + Specials.Length;

    /// <summary>
    /// Creates the model under <paramref name="directory"/> unless a complete copy of this version is there, atomically
    /// (<see cref="AtomicDirectory"/>), so a crash never leaves half a model.
    /// </summary>
    public static string EnsureCreated(string directory)
    {
        var marker = Path.Combine(directory, ".gpud-demo-version");
        if (File.Exists(marker) && File.ReadAllText(marker).Trim() == Version.ToString(System.Globalization.CultureInfo.InvariantCulture))
            return directory;

        AtomicDirectory.Write(directory, temp =>
        {
            WriteConfig(temp);
            WriteTokenizer(temp);
            WriteWeights(temp);
            File.WriteAllText(Path.Combine(temp, ".gpud-demo-version"), Version.ToString(System.Globalization.CultureInfo.InvariantCulture));
        });
        return directory;
    }

    private static int SpecialId(string token) => 256 + Array.IndexOf(Specials, token);

    private static void WriteConfig(string directory)
    {
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = Hidden,
            ["intermediate_size"] = Intermediate,
            ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = Heads,
            ["num_key_value_heads"] = KvHeads,
            ["head_dim"] = Hidden / Heads,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = MaxPositions,
            ["rms_norm_eps"] = 1e-5,
            ["rope_theta"] = 10000.0,
            ["rope_scaling"] = null,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["tie_word_embeddings"] = true,
            ["bos_token_id"] = SpecialId("<|begin_of_text|>"),
            ["eos_token_id"] = new JsonArray(SpecialId("<|end_of_text|>"), SpecialId("<|eot_id|>")),
            ["torch_dtype"] = "float32",
            ["transformers_version"] = "4.46.0",
        };
        Write(Path.Combine(directory, "config.json"), config);
        Write(Path.Combine(directory, "generation_config.json"), new JsonObject
        {
            ["bos_token_id"] = SpecialId("<|begin_of_text|>"),
            ["eos_token_id"] = new JsonArray(SpecialId("<|end_of_text|>"), SpecialId("<|eot_id|>")),
        });
    }

    private static void WriteTokenizer(string directory)
    {
        // Byte-level BPE with the 256 byte symbols and no merges: every byte is one token, so the vocabulary (and the
        // softmax) stays tiny. Same pre-tokenizer and post-processor as Llama 3's tokenizer.json.
        var vocab = new JsonObject();
        foreach (var (symbol, id) in ByteSymbols()) vocab[symbol] = id;
        var added = new JsonArray();
        foreach (var token in Specials)
        {
            added.Add(new JsonObject
            {
                ["id"] = SpecialId(token), ["content"] = token, ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            });
        }
        var bos = SpecialId("<|begin_of_text|>");
        var tokenizer = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject
                    {
                        ["type"] = "Split",
                        ["pattern"] = new JsonObject { ["Regex"] = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+" },
                        ["behavior"] = "Isolated",
                        ["invert"] = false,
                    },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
            },
            ["post_processor"] = new JsonObject
            {
                ["type"] = "TemplateProcessing",
                ["single"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
                ["pair"] = new JsonArray(
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["type_id"] = 0 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } },
                    new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["type_id"] = 1 } },
                    new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "B", ["type_id"] = 1 } }),
                ["special_tokens"] = new JsonObject
                {
                    ["<|begin_of_text|>"] = new JsonObject { ["id"] = "<|begin_of_text|>", ["ids"] = new JsonArray(bos), ["tokens"] = new JsonArray("<|begin_of_text|>") },
                },
            },
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocab, ["merges"] = new JsonArray(),
            },
        };
        Write(Path.Combine(directory, "tokenizer.json"), tokenizer);
        Write(Path.Combine(directory, "tokenizer_config.json"), new JsonObject
        {
            ["bos_token"] = "<|begin_of_text|>",
            ["eos_token"] = "<|eot_id|>",
            ["pad_token"] = "<|pad|>",
            ["clean_up_tokenization_spaces"] = false,
            ["model_max_length"] = MaxPositions,
            ["tokenizer_class"] = "PreTrainedTokenizerFast",
            ["chat_template"] = Llama3ChatTemplate,
        });
    }

    /// <summary>Llama 3's chat template (without the date/tools preamble of 3.1), as in its tokenizer_config.json.</summary>
    public const string Llama3ChatTemplate =
        "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

    private static void WriteWeights(string directory)
    {
        var random = new SplitMix64(Seed);
        var headDim = Hidden / Heads;
        var tensors = new List<TensorData>
        {
            Normal("model.embed_tokens.weight", random, 0.1, VocabSize, Hidden), // logits spread ~1: sampling varies
            Ones("model.norm.weight", Hidden),
        };
        for (var i = 0; i < Layers; i++)
        {
            var p = $"model.layers.{i}.";
            tensors.Add(Ones(p + "input_layernorm.weight", Hidden));
            tensors.Add(Ones(p + "post_attention_layernorm.weight", Hidden));
            tensors.Add(Normal(p + "self_attn.q_proj.weight", random, 1 / Math.Sqrt(Hidden), Heads * headDim, Hidden));
            tensors.Add(Normal(p + "self_attn.k_proj.weight", random, 1 / Math.Sqrt(Hidden), KvHeads * headDim, Hidden));
            tensors.Add(Normal(p + "self_attn.v_proj.weight", random, 1 / Math.Sqrt(Hidden), KvHeads * headDim, Hidden));
            tensors.Add(Normal(p + "self_attn.o_proj.weight", random, 1 / Math.Sqrt(Heads * headDim) / Math.Sqrt(2 * Layers), Hidden, Heads * headDim));
            tensors.Add(Normal(p + "mlp.gate_proj.weight", random, 1 / Math.Sqrt(Hidden), Intermediate, Hidden));
            tensors.Add(Normal(p + "mlp.up_proj.weight", random, 1 / Math.Sqrt(Hidden), Intermediate, Hidden));
            tensors.Add(Normal(p + "mlp.down_proj.weight", random, 1 / Math.Sqrt(Intermediate) / Math.Sqrt(2 * Layers), Hidden, Intermediate));
        }
        SafetensorsWriter.Write(Path.Combine(directory, "model.safetensors"), tensors);
    }

    private static TensorData Normal(string name, SplitMix64 random, double std, params long[] shape)
    {
        var count = shape.Aggregate(1L, (a, b) => a * b);
        var values = new float[count];
        for (var i = 0; i < count; i++) values[i] = (float)(random.NextGaussian() * std);
        return new TensorData(name, "F32", shape, ToBytes(values));
    }

    private static TensorData Ones(string name, long size) => new(name, "F32", [size], ToBytes(Enumerable.Repeat(1f, (int)size).ToArray()));

    private static byte[] ToBytes(float[] values)
    {
        var bytes = new byte[values.Length * sizeof(float)];
        Buffer.BlockCopy(values, 0, bytes, 0, bytes.Length);
        return bytes;
    }

    /// <summary>GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to U+0100 onwards.</summary>
    private static IEnumerable<(string Symbol, int Id)> ByteSymbols()
    {
        var printable = Enumerable.Range('!', '~' - '!' + 1).Concat(Enumerable.Range('¡', '¬' - '¡' + 1)).Concat(Enumerable.Range('®', 'ÿ' - '®' + 1)).ToHashSet();
        var next = 256;
        for (var b = 0; b < 256; b++)
            yield return (((char)(printable.Contains(b) ? b : next++)).ToString(), b);
    }

    private static void Write(string path, JsonNode node) =>
        File.WriteAllText(path, node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n", new UTF8Encoding(false));

    /// <summary>A tiny, fully specified PRNG (SplitMix64 + Box-Muller): the same numbers on every machine and runtime.</summary>
    private sealed class SplitMix64(ulong state)
    {
        private double? _spare;

        public double NextGaussian()
        {
            if (_spare is { } spare)
            {
                _spare = null;
                return spare;
            }
            double u;
            do u = NextDouble(); while (u <= double.Epsilon);
            var v = NextDouble();
            var radius = Math.Sqrt(-2 * Math.Log(u));
            _spare = radius * Math.Sin(2 * Math.PI * v);
            return radius * Math.Cos(2 * Math.PI * v);
        }

        private double NextDouble() => (Next() >> 11) * (1.0 / (1UL << 53));

        private ulong Next()
        {
            var z = state += 0x9E3779B97F4A7C15UL;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }
    }
}
