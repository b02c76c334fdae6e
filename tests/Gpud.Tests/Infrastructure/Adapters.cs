using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using static TorchSharp.torch;

namespace Gpud.Tests.Infrastructure;

/// <summary>PEFT adapters with random, clearly non-zero weights, as if trained, for a model directory.</summary>
public static class Adapters
{
    public static string Write(string directory, string modelDirectory, long seed, LoraSettings? settings = null, string[]? targets = null, double strength = 0.3)
    {
        settings ??= new LoraSettings(4, 8);
        targets ??= ["all-linear"];
        using var model = CausalLanguageModel.Load(modelDirectory, CPU, ScalarType.Float32);
        LoraModel.Attach(model, settings, targets, seed);
        using var generator = new TorchSharp.torch.Generator((ulong)seed + 1);
        using (no_grad())
        {
            foreach (var (_, _, layer) in LoraModel.Projections(model).Where(p => p.Layer.Adapter is not null))
            {
                using var scope = NewDisposeScope();
                layer.Adapter!.B.add_(randn(layer.Adapter.B.shape, generator: generator) * strength);
                layer.Adapter.Magnitude?.mul_(1.2);
            }
        }
        PeftAdapter.Save(directory, model, settings, targets, Path.GetFileName(modelDirectory));
        return directory;
    }
}
