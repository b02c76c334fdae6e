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
/// gpud-tiny with a chat template of the test's own and a LoRA adapter fine-tuned on chat examples (OpenAI's format)
/// until it has learnt them by heart: a model that behaves as a test needs, in seconds on a CPU.
/// </summary>
public static class TinyChatModel
{
    /// <summary>Writes the base model to <c>{directory}/base</c> and the adapter (PEFT format) to <c>{directory}/adapter</c>.</summary>
    public static (string Base, string Adapter) Train(string directory, string template, IEnumerable<object> examples)
    {
        var path = DemoModel.EnsureCreated(Path.Combine(directory, "base"));
        var configPath = Path.Combine(path, "tokenizer_config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config["chat_template"] = template;
        File.WriteAllText(configPath, config.ToJsonString());

        var tokenizer = TextTokenizer.Load(path);
        var encoder = new ExampleEncoder(tokenizer, new ChatFormatter(tokenizer, ChatTemplate.Parse(tokenizer.ChatTemplate!)), 512);
        var data = examples.SelectMany((e, i) => encoder.Encode(JsonSerializer.SerializeToElement(e), i + 1)).ToList();

        using var model = CausalLanguageModel.Load(path, CPU, ScalarType.Float32);
        var settings = new LoraSettings(8, 16);
        var parameters = LoraModel.Attach(model, settings, ["all-linear"], seed: 1);
        new LoraTrainer(model, parameters, new TrainingOptions(Epochs: 12, BatchSize: 4, LearningRate: 5e-3, Seed: 1)).Train(data);
        var adapter = Path.Combine(directory, "adapter");
        PeftAdapter.Save(adapter, model, settings, ["all-linear"], Path.GetFileName(path));
        return (path, adapter);
    }

    /// <summary>A class fixture: the model trained once, served by each <see cref="Factory"/> as a base model and an adapter.</summary>
    public abstract class Fixture : IDisposable
    {
        private readonly TempDir _dir = new();
        private readonly (string Base, string Adapter) _paths;
        private readonly (string Base, string Adapter) _names;

        protected Fixture(string baseName, string adapterName, Func<string, (string Base, string Adapter)> prepare)
        {
            ArgumentNullException.ThrowIfNull(prepare);
            _names = (baseName, adapterName);
            _paths = prepare(_dir.Path);
        }

        public GpudFactory Factory() => new(new Dictionary<string, string?>
        {
            [$"Gpud:Models:{_names.Base}:Path"] = _paths.Base,
            [$"Gpud:Adapters:{_names.Adapter}:Path"] = _paths.Adapter,
            [$"Gpud:Adapters:{_names.Adapter}:BaseModel"] = _names.Base,
        });

        public void Dispose()
        {
            _dir.Dispose();
            GC.SuppressFinalize(this);
        }
    }
}
