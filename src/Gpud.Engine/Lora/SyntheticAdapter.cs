using Gpud.Engine.Models;
using static TorchSharp.torch;

namespace Gpud.Engine.Lora;

/// <summary>
/// PEFT adapters with random, clearly non-zero weights for a model directory, as if trained: for serving benchmarks
/// (many distinct adapters without training each) and for tests that need adapters which change the output.
/// </summary>
public static class SyntheticAdapter
{
    public static string Write(string directory, string modelDirectory, long seed, LoraSettings settings, IReadOnlyCollection<string> targets, double strength = 0.3)
    {
        ArgumentNullException.ThrowIfNull(settings);
        using var model = CausalLanguageModel.Load(modelDirectory, CPU, ScalarType.Float32);
        LoraModel.Attach(model, settings, targets, seed);
        using var generator = new Generator((ulong)seed + 1);
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
