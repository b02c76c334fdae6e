using Gpud.Engine.Lora;

namespace Gpud.Tests.Infrastructure;

/// <summary>PEFT adapters with random, clearly non-zero weights, as if trained, for a model directory.</summary>
public static class Adapters
{
    public static string Write(string directory, string modelDirectory, long seed, LoraSettings? settings = null, string[]? targets = null) =>
        SyntheticAdapter.Write(directory, modelDirectory, seed, settings ?? new LoraSettings(4, 8), targets ?? ["all-linear"]);
}
