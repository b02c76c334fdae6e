using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Engine.Demo;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Engine.Templates;
using Gpud.Engine.Tokenization;
using Gpud.Engine.Training;
using static TorchSharp.torch;

namespace Gpud.Tests.Infrastructure;

/// <summary>
/// gpud-tiny with a reasoning chat template (an empty <c>&lt;think&gt;</c> block before an answer that has none, as
/// Qwen3's writes) and a LoRA adapter fine-tuned to think ("add") before answering "4" to "Think: 2+2?", and to answer
/// "Hi!" to "Say hi" without thinking. Trains in a few seconds on a CPU.
/// </summary>
public static class Thinker
{
    private const string Template =
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n" +
        "{% if m.role == 'assistant' and not (m.content and '<think>' in m.content) %}<think>\n\n</think>\n\n{% endif %}{{ m.content }}<|eot_id|>{% endfor %}" +
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

    /// <summary>Writes the base model to <c>{directory}/base</c> and the adapter (PEFT format) to <c>{directory}/adapter</c>.</summary>
    public static (string Base, string Adapter) Prepare(string directory)
    {
        var path = DemoModel.EnsureCreated(Path.Combine(directory, "base"));
        var configPath = Path.Combine(path, "tokenizer_config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config["chat_template"] = Template;
        File.WriteAllText(configPath, config.ToJsonString());

        var tokenizer = TextTokenizer.Load(path);
        var encoder = new ExampleEncoder(tokenizer, new ChatFormatter(tokenizer, ChatTemplate.Parse(tokenizer.ChatTemplate!)), 512);
        var examples = Enumerable.Range(0, 10).SelectMany(_ => new object[]
        {
            new { messages = new object[] { new { role = "user", content = "Think: 2+2?" }, new { role = "assistant", content = "<think>\nadd\n</think>\n\n4" } } },
            new { messages = new object[] { new { role = "user", content = "Say hi" }, new { role = "assistant", content = "Hi!" } } },
        });
        var data = examples.SelectMany((e, i) => encoder.Encode(JsonSerializer.SerializeToElement(e), i + 1)).ToList();

        using var model = CausalLanguageModel.Load(path, CPU, ScalarType.Float32);
        var settings = new LoraSettings(8, 16);
        var parameters = LoraModel.Attach(model, settings, ["all-linear"], seed: 1);
        new LoraTrainer(model, parameters, new TrainingOptions(Epochs: 12, BatchSize: 4, LearningRate: 5e-3, Seed: 1)).Train(data);
        var adapter = Path.Combine(directory, "adapter");
        PeftAdapter.Save(adapter, model, settings, ["all-linear"], Path.GetFileName(path));
        return (path, adapter);
    }
}
