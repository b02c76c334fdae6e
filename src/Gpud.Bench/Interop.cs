using System.Globalization;
using System.Text.Json;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Engine.Training;
using Gpud.Engine.Weights;
using static TorchSharp.torch;

namespace Gpud.Bench;

/// <summary>
/// <c>gpud-bench interop</c>: gpud's side of the PEFT interop check (scripts/gpu/peft_interop.py). For each adapter
/// variant it trains a few real steps with gpud's trainer (so B and the DoRA magnitudes move away from their
/// initial values), saves the adapter exactly as a fine-tuning job does (<see cref="PeftAdapter.Save"/>), and writes the
/// logits gpud computes with that adapter on fixed token ids; Python then loads the same directory with
/// <c>PeftModel.from_pretrained</c> and compares.
/// </summary>
internal static class Interop
{
    private static readonly Dictionary<string, LoraSettings> Variants = new(StringComparer.Ordinal)
    {
        ["lora"] = new(8, 16),
        ["rslora"] = new(8, 16, UseRslora: true),
        ["dora"] = new(8, 16, UseDora: true),
        ["pissa"] = new(8, 16, Init: LoraInit.Pissa),
    };

    public static int Run(Arguments arguments)
    {
        var modelDir = arguments.Get("model", "");
        var output = arguments.Get("out", "");
        var device = new Device(arguments.Get("device", "cpu"));
        Directory.CreateDirectory(output);
        var config = ModelConfig.Load(modelDir);
        var random = new Random(5);
        var ids = Enumerable.Range(0, 2).Select(_ => Enumerable.Range(0, 24).Select(_ => (long)random.Next(config.VocabSize)).ToArray()).ToArray();
        File.WriteAllText(Path.Combine(output, "input_ids.json"), JsonSerializer.Serialize(ids));

        using (var model = CausalLanguageModel.Load(modelDir, device, ScalarType.Float32))
            WriteLogits(model, ids, Path.Combine(output, "base_logits.safetensors"));

        foreach (var (name, settings) in Variants)
        {
            using var model = CausalLanguageModel.Load(modelDir, device, ScalarType.Float32);
            var parameters = LoraModel.Attach(model, settings, ["all-linear"], seed: 1);
            var data = Enumerable.Range(0, 8)
                .Select(i => new TrainingExample(Enumerable.Range(0, 32).Select(_ => random.Next(config.VocabSize)).ToArray(), Enumerable.Repeat(true, 32).ToArray(), i + 1, false))
                .ToList();
            new LoraTrainer(model, parameters, new TrainingOptions(Epochs: 2, BatchSize: 2, LearningRate: 2e-2, Seed: 1)).Train(data);
            var adapter = Path.Combine(output, name);
            PeftAdapter.Save(adapter, model, settings, ["all-linear"], Path.GetFullPath(modelDir));
            WriteLogits(model, ids, Path.Combine(adapter, "gpud_logits.safetensors"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"variant={name} adapter={adapter}"));
        }
        return 0;
    }

    private static void WriteLogits(CausalLanguageModel model, long[][] ids, string path)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        model.eval();
        var input = tensor(ids.SelectMany(r => r).ToArray(), [ids.Length, ids[0].Length], device: model.Device);
        var positions = arange(ids[0].Length, ScalarType.Int64, model.Device).unsqueeze(0).expand(ids.Length, -1);
        var logits = model.Logits(model.Hidden(input, positions)).to(ScalarType.Float32, CPU).contiguous();
        SafetensorsWriter.Write(path, [new TensorData("logits", "F32", logits.shape, logits.bytes.ToArray())]);
    }
}
