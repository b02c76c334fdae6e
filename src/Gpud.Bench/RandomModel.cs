using System.Globalization;
using System.Text.Json.Nodes;
using Gpud.Engine.Demo;
using Gpud.Engine.IO;
using Gpud.Engine.Models;
using Gpud.Engine.Weights;
using static TorchSharp.torch;

namespace Gpud.Bench;

/// <summary>
/// <c>gpud-bench make-model</c>: a Hugging Face Llama checkpoint directory with random bf16 weights, of any shape (the
/// default is Llama 3.2 1B's: hidden 2048, 16 layers, GQA 32/8, MLP 8192, vocabulary 128,256, tied embeddings), that
/// gpud, transformers and PEFT all load: the side-by-side benchmarks' shared model. The tokenizer and chat template are
/// gpud-tiny's (bytes and Llama 3 specials) with the vocabulary filled up to the model's size by tokens "tok{id}" that
/// encoding never produces: every sampled id decodes to text, so a streamed completion has one chunk per token and
/// time-to-first-token and inter-token latency mean what they say.
/// </summary>
internal static class RandomModel
{
    private static readonly string[] TokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "generation_config.json"];

    public static int Write(Arguments arguments)
    {
        var output = arguments.Get("out", "");
        if (output.Length == 0) throw new ArgumentException("--out DIR is required");
        if (arguments.Get("preset", "") == DemoModel.Name)
        {
            Console.WriteLine($"model={DemoModel.EnsureCreated(output)} preset={DemoModel.Name}");
            return 0;
        }
        var hidden = arguments.Int("hidden", 2048);
        var heads = arguments.Int("heads", 32);
        var vocab = arguments.Int("vocab", 128256);
        var tokenizerSource = DemoModel.EnsureCreated(Path.Combine(Path.GetTempPath(), "gpud-bench", "tokenizer-source"));
        AtomicDirectory.Write(output, temp =>
        {
            foreach (var file in TokenizerFiles)
                File.Copy(Path.Combine(tokenizerSource, file), Path.Combine(temp, file));
            var tokenizer = JsonNode.Parse(File.ReadAllText(Path.Combine(temp, "tokenizer.json")))!.AsObject();
            var vocabulary = tokenizer["model"]!["vocab"]!.AsObject();
            for (var id = DemoModel.VocabSize; id < vocab; id++) vocabulary[$"tok{id}"] = id;
            File.WriteAllText(Path.Combine(temp, "tokenizer.json"), tokenizer.ToJsonString());
            var config = JsonNode.Parse(File.ReadAllText(Path.Combine(tokenizerSource, "config.json")))!.AsObject();
            config["vocab_size"] = vocab;
            config["hidden_size"] = hidden;
            config["intermediate_size"] = arguments.Int("intermediate", 8192);
            config["num_hidden_layers"] = arguments.Int("layers", 16);
            config["num_attention_heads"] = heads;
            config["num_key_value_heads"] = arguments.Int("kv-heads", 8);
            config["head_dim"] = hidden / heads;
            config["max_position_embeddings"] = 131072;
            config["rope_theta"] = 500000.0;
            config["tie_word_embeddings"] = arguments.Get("tie", "true") == "true";
            config["torch_dtype"] = "bfloat16";
            File.WriteAllText(Path.Combine(temp, "config.json"), config.ToJsonString() + "\n");

            var shape = ModelConfig.Load(temp);
            using var weights = new RandomWeights(shape, (ulong)arguments.Int("seed", 1));
            var tensors = weights.Names.Order(StringComparer.Ordinal).Select(name =>
            {
                using var tensor = weights.Read(name, ScalarType.BFloat16);
                return new TensorData(name, "BF16", tensor.shape, tensor.bytes.ToArray());
            });
            SafetensorsWriter.Write(Path.Combine(temp, "model.safetensors"), tensors);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"model={output} parameters={shape.ParameterCount} hidden={shape.HiddenSize} layers={shape.NumLayers} heads={shape.NumHeads}/{shape.NumKeyValueHeads} vocab={shape.VocabSize}"));
        });
        return 0;
    }
}
