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
        using var weights = Read(directory, model.Config);
        var layers = LoraModel.Projections(model).ToDictionary(p => p.Path, p => p.Layer, StringComparer.Ordinal);
        foreach (var (path, projection) in weights.Projections)
        {
            var layer = layers[path];
            layer.Attach(LoraAdapter.FromWeights(layer, weights.Settings, projection.A, projection.B, projection.Magnitude));
        }
        return weights.Settings;
    }

    /// <summary>
    /// Reads a PEFT LoRA adapter into host memory (float32) and checks it against a base model's config: peft_type,
    /// rank, every tensor's name and shape. Nothing needs the base weights, so an upload is validated before any model
    /// is on a device. Errors are <see cref="ModelLoadException"/>s whose messages name the offending key.
    /// </summary>
    public static LoraWeights Read(string directory, ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        var configPath = Path.Combine(directory, ConfigFile);
        if (!File.Exists(configPath)) throw new ModelLoadException($"{directory}: no {ConfigFile}.");
        JsonNode json;
        try
        {
            json = JsonNode.Parse(File.ReadAllText(configPath)) ?? throw new ModelLoadException($"{ConfigFile} is empty.");
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{ConfigFile} is not valid JSON: {e.Message}", e);
        }
        LoraSettings settings;
        try
        {
            if ((string?)json["peft_type"] != "LORA") throw new ModelLoadException($"{ConfigFile}: peft_type must be \"LORA\".");
            var rank = (int?)json["r"] ?? throw new ModelLoadException($"{ConfigFile}: 'r' is missing.");
            if (rank < 1) throw new ModelLoadException($"{ConfigFile}: 'r' must be at least 1.");
            if (json["rank_pattern"] is JsonObject { Count: > 0 } || json["alpha_pattern"] is JsonObject { Count: > 0 })
                throw new ModelLoadException($"{ConfigFile}: per-module rank_pattern/alpha_pattern is not supported.");
            settings = new LoraSettings(rank, (double?)json["lora_alpha"] ?? rank, (double?)json["lora_dropout"] ?? 0,
                (bool?)json["use_rslora"] ?? false, (bool?)json["use_dora"] ?? false);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException)
        {
            throw new ModelLoadException($"{ConfigFile}: a field has the wrong type ({e.Message}).", e);
        }

        var weightsPath = Path.Combine(directory, WeightsFile);
        if (!File.Exists(weightsPath)) throw new ModelLoadException($"{directory}: no {WeightsFile}.");
        using var file = new SafetensorsFile(weightsPath);
        var shapes = LoraModel.ProjectionShapes(config).ToList();
        var unknown = file.Names.FirstOrDefault(n => !shapes.Any(p => n.StartsWith($"base_model.model.{p.Path}.", StringComparison.Ordinal)));
        if (unknown is not null) throw new ModelLoadException($"{WeightsFile}: '{unknown}' matches no projection of the base model (another architecture?).");
        var projections = new Dictionary<string, LoraProjection>(StringComparer.Ordinal);
        try
        {
            foreach (var (path, name, inFeatures, outFeatures) in shapes)
            {
                var prefix = $"base_model.model.{path}";
                if (!file.Contains($"{prefix}.lora_A.weight")) continue;
                var a = Read(file, $"{prefix}.lora_A.weight", [settings.Rank, inFeatures]);
                var b = Read(file, $"{prefix}.lora_B.weight", [outFeatures, settings.Rank]);
                var magnitude = settings.UseDora ? Read(file, $"{prefix}.lora_magnitude_vector", [outFeatures]) : null;
                projections[path] = new LoraProjection(name, a, b, magnitude);
            }
        }
        catch
        {
            foreach (var p in projections.Values) p.Dispose();
            throw;
        }
        if (projections.Count == 0) throw new ModelLoadException($"{WeightsFile}: the adapter has no LoRA weights for this model.");
        return new LoraWeights(settings, projections, (string?)json["base_model_name_or_path"]);
    }

    private static Tensor Read(SafetensorsFile file, string name, long[] shape)
    {
        if (!file.Contains(name)) throw new ModelLoadException($"{WeightsFile}: '{name}' is missing.");
        var actual = file.ShapeOf(name);
        if (!actual.SequenceEqual(shape))
            throw new ModelLoadException($"{WeightsFile}: '{name}' has shape [{string.Join(", ", actual)}], the base model needs [{string.Join(", ", shape)}] (another base or rank?).");
        return file.Read(name, ScalarType.Float32);
    }

    private static TensorData Float32(string name, Tensor tensor)
    {
        using var cpu = tensor.to_type(ScalarType.Float32).to(CPU).contiguous();
        return new TensorData(name, "F32", cpu.shape, cpu.bytes.ToArray());
    }
}
