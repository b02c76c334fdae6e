using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Engine.IO;
using Gpud.Engine.Models;
using Gpud.Engine.Models.Layers;
using Gpud.Engine.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace Gpud.Engine.Lora;

/// <summary>
/// Adapters in Hugging Face PEFT's on-disk format, so PEFT, vLLM and gpud all load them: adapter_config.json and
/// adapter_model.safetensors with keys <c>base_model.model.{module path}.lora_A.weight</c>, <c>.lora_B.weight</c> and
/// DoRA's <c>.lora_magnitude_vector</c>. A PiSSA adapter is written relative to the original base weight (PEFT's
/// "convert to LoRA": rank 2r with A = [A; A₀], B = [B, −B₀] and α scaled to keep the same scale), because a plain
/// PEFT load applies it to the original model, not to gpud's residual.
/// </summary>
public static class PeftAdapter
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";

    public static void Save(string directory, CausalLanguageModel model, LoraSettings settings, IReadOnlyCollection<string> targetModules, string baseModelName)
    {
        ArgumentNullException.ThrowIfNull(settings);
        var tensors = new List<TensorData>();
        var rank = settings.Rank;
        using (var scope = NewDisposeScope())
        {
            foreach (var (path, _, layer) in LoraModel.Projections(model))
            {
                if (layer.Adapter is not { } adapter) continue;
                var (a, b) = (adapter.A.detach(), adapter.B.detach());
                if (adapter.InitialA is not null)
                {
                    a = cat([a, adapter.InitialA], 0);
                    b = cat([b, -adapter.InitialB!], 1);
                    rank = 2 * settings.Rank;
                }
                var prefix = $"base_model.model.{path}";
                tensors.Add(Float32($"{prefix}.lora_A.weight", a));
                tensors.Add(Float32($"{prefix}.lora_B.weight", b));
                if (adapter.Magnitude is not null) tensors.Add(Float32($"{prefix}.lora_magnitude_vector", adapter.Magnitude.detach()));
            }
        }
        if (tensors.Count == 0) throw new InvalidOperationException("The model has no adapters to save.");

        // Same scale at the doubled rank: α/r for LoRA, α/√r for rsLoRA.
        var alpha = rank == settings.Rank ? settings.Alpha : settings.UseRslora ? settings.Alpha * Math.Sqrt(2) : settings.Alpha * 2;
        var config = new JsonObject
        {
            ["peft_type"] = "LORA",
            ["task_type"] = "CAUSAL_LM",
            ["base_model_name_or_path"] = baseModelName,
            ["r"] = rank,
            ["lora_alpha"] = alpha,
            ["lora_dropout"] = settings.Dropout,
            ["target_modules"] = new JsonArray(targetModules.Contains("all-linear")
                ? LoraSettings.AllLinear.Select(t => (JsonNode?)t).ToArray()
                : targetModules.Order(StringComparer.Ordinal).Select(t => (JsonNode?)t).ToArray()),
            ["use_rslora"] = settings.UseRslora,
            ["use_dora"] = settings.UseDora,
            ["init_lora_weights"] = true, // the weights are in the file; nothing to initialise on load
            ["bias"] = "none",
            ["fan_in_fan_out"] = false,
            ["inference_mode"] = true,
            ["modules_to_save"] = null,
            ["layers_to_transform"] = null,
            ["layers_pattern"] = null,
            ["rank_pattern"] = new JsonObject(),
            ["alpha_pattern"] = new JsonObject(),
        };

        // A reader (a serving node, a resumed job) sees the old adapter or the new one, never half of one.
        AtomicDirectory.Write(directory, temp =>
        {
            SafetensorsWriter.Write(Path.Combine(temp, WeightsFile), tensors, new Dictionary<string, string> { ["format"] = "pt" });
            File.WriteAllText(Path.Combine(temp, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        });
    }

    /// <summary>Reads a PEFT LoRA adapter and attaches it to <paramref name="model"/>; checks ranks, targets and shapes.</summary>
    public static LoraSettings Load(string directory, CausalLanguageModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var configPath = Path.Combine(directory, ConfigFile);
        if (!File.Exists(configPath)) throw new ModelLoadException($"{directory}: no {ConfigFile}.");
        JsonNode config;
        try
        {
            config = JsonNode.Parse(File.ReadAllText(configPath)) ?? throw new ModelLoadException($"{configPath} is empty.");
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{configPath} is not valid JSON: {e.Message}", e);
        }
        if ((string?)config["peft_type"] != "LORA") throw new ModelLoadException($"{configPath}: peft_type must be LORA.");
        var rank = (int?)config["r"] ?? throw new ModelLoadException($"{configPath}: 'r' is missing.");
        var settings = new LoraSettings(rank, (double?)config["lora_alpha"] ?? rank, (double?)config["lora_dropout"] ?? 0,
            (bool?)config["use_rslora"] ?? false, (bool?)config["use_dora"] ?? false);

        using var weights = new SafetensorsFile(Path.Combine(directory, WeightsFile));
        var attached = 0;
        // No dispose scope here: the adapters' parameters created below must outlive this method.
        foreach (var (path, _, layer) in LoraModel.Projections(model))
        {
            var prefix = $"base_model.model.{path}";
            if (!weights.Contains($"{prefix}.lora_A.weight")) continue;
            using var a = Read(weights, $"{prefix}.lora_A.weight", [rank, layer.InFeatures]);
            using var b = Read(weights, $"{prefix}.lora_B.weight", [layer.OutFeatures, rank]);
            using var magnitude = settings.UseDora ? Read(weights, $"{prefix}.lora_magnitude_vector", [layer.OutFeatures]) : null;
            layer.Attach(LoraAdapter.FromWeights(layer, settings, a, b, magnitude));
            attached++;
        }
        var unknown = weights.Names.FirstOrDefault(n => !LoraModel.Projections(model).Any(p => n.StartsWith($"base_model.model.{p.Path}.", StringComparison.Ordinal)));
        if (unknown is not null) throw new ModelLoadException($"{directory}: '{unknown}' matches no projection of the base model.");
        if (attached == 0) throw new ModelLoadException($"{directory}: the adapter has no LoRA weights for this model.");
        return settings;
    }

    private static Tensor Read(SafetensorsFile file, string name, long[] shape)
    {
        if (!file.Contains(name)) throw new ModelLoadException($"{file.Path}: '{name}' is missing.");
        var actual = file.ShapeOf(name);
        if (!actual.SequenceEqual(shape))
            throw new ModelLoadException($"{file.Path}: '{name}' has shape [{string.Join(", ", actual)}], the base model needs [{string.Join(", ", shape)}] (another base or rank?).");
        return file.Read(name, ScalarType.Float32);
    }

    private static TensorData Float32(string name, Tensor tensor)
    {
        using var cpu = tensor.to_type(ScalarType.Float32).to(CPU).contiguous();
        return new TensorData(name, "F32", cpu.shape, cpu.bytes.ToArray());
    }
}
