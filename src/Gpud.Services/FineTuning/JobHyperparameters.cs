using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Engine.Lora;
using Gpud.Engine.Training;
using Gpud.Services.Errors;
using static Gpud.Services.Errors.RequestFields;

namespace Gpud.Services.FineTuning;

/// <summary>
/// A job's method and hyperparameters: OpenAI's three (<c>batch_size</c>, <c>learning_rate_multiplier</c>,
/// <c>n_epochs</c>, null meaning <c>"auto"</c> until the training file has been read), DPO's <c>beta</c>, and gpud's
/// LoRA settings, which clients send as extra fields of <c>method.{supervised|dpo}.hyperparameters</c>. Stored and
/// echoed as OpenAI's <c>method</c> object.
/// </summary>
public sealed record JobHyperparameters
{
    /// <summary>DPO's β must lie in (0, 2], as OpenAI accepts it.</summary>
    public const double MaxBeta = 2;

    /// <summary>Supervised (method type <c>supervised</c>) or preference pairs (<c>dpo</c>).</summary>
    public TrainingObjective Objective { get; init; } = TrainingObjective.Supervised;

    /// <summary>The method's type as OpenAI names it.</summary>
    public string MethodType => Objective == TrainingObjective.Preference ? "dpo" : "supervised";

    /// <summary>DPO's β; null: "auto" (<see cref="PreferenceLoss.DefaultBeta"/>) until resolved, and always for supervised jobs.</summary>
    public double? Beta { get; init; }

    public const int MaxBatchSize = 256;
    public const int MaxEpochs = 50;
    public const int MaxRank = 1024;

    public int? BatchSize { get; init; }
    public double? LearningRateMultiplier { get; init; }
    public int? NEpochs { get; init; }
    public int LoraR { get; init; } = 16;
    public double LoraAlpha { get; init; } = 32;
    public double LoraDropout { get; init; }
    public IReadOnlyList<string> TargetModules { get; init; } = ["all-linear"];
    public bool UseRslora { get; init; }
    public bool UseDora { get; init; }
    public LoraInit Init { get; init; } = LoraInit.Gaussian;
    public bool Packing { get; init; } = true;

    /// <summary>Recompute each decoder layer during backward instead of keeping its activations (long contexts).</summary>
    public bool GradientCheckpointing { get; init; }
    public LearningRateSchedule Scheduler { get; init; } = LearningRateSchedule.Linear;
    public double WarmupRatio { get; init; } = 0.03;
    public double WeightDecay { get; init; }

    /// <summary>null: "auto" (about 20 evaluations per run when there is a validation file); 0: only at epoch ends.</summary>
    public int? EvalEverySteps { get; init; }

    /// <summary>0: checkpoints only at epoch ends.</summary>
    public int CheckpointEverySteps { get; init; }

    /// <summary>The base learning rate this job resolved to (gpud extension, set with the auto values).</summary>
    public double? LearningRate { get; init; }

    public bool IsResolved => BatchSize is not null && LearningRateMultiplier is not null && NEpochs is not null && LearningRate is not null
                              && (Objective != TrainingObjective.Preference || Beta is not null);

    public LoraSettings Lora => new(LoraR, LoraAlpha, LoraDropout, UseRslora, UseDora, Init);

    /// <summary>The settings that give an adapter its shape: a job that continues a fine-tuned model takes them from it.</summary>
    public static IReadOnlyList<string> AdapterShapeKeys { get; } = ["lora_r", "lora_alpha", "use_rslora", "use_dora", "init", "target_modules"];

    /// <summary>These hyperparameters with the shape of the adapter a job continues.</summary>
    public JobHyperparameters WithAdapterShape(LoraSettings adapter, IReadOnlyList<string> targetModules)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        return this with
        {
            LoraR = adapter.Rank,
            LoraAlpha = adapter.Alpha,
            UseRslora = adapter.UseRslora,
            UseDora = adapter.UseDora,
            Init = LoraInit.Gaussian, // the weights are given: nothing is initialised
            TargetModules = LoraSettings.AllLinear.Where(targetModules.Contains).ToList(),
        };
    }

    /// <summary>Fills in every "auto" value from what the training file holds.</summary>
    /// <param name="items">What a step takes batch_size of: sequences, or preference pairs.</param>
    public JobHyperparameters Resolve(int examples, int items, long modelParameters, bool hasValidation)
    {
        var epochs = NEpochs ?? AutoHyperparameters.Epochs(examples);
        var batch = BatchSize ?? AutoHyperparameters.BatchSize(examples);
        var multiplier = LearningRateMultiplier ?? 1.0;
        var steps = epochs * (int)Math.Ceiling(items / (double)batch);
        var preference = Objective == TrainingObjective.Preference;
        return this with
        {
            NEpochs = epochs,
            BatchSize = batch,
            LearningRateMultiplier = multiplier,
            LearningRate = AutoHyperparameters.BaseLearningRate(modelParameters) * (preference ? AutoHyperparameters.PreferenceRateFactor : 1) * multiplier,
            EvalEverySteps = EvalEverySteps ?? (hasValidation ? Math.Max(1, steps / 20) : 0),
            Beta = preference ? Beta ?? PreferenceLoss.DefaultBeta : null,
        };
    }

    /// <summary>OpenAI's <c>hyperparameters</c> object: the three values, "auto" until resolved.</summary>
    public JsonObject ToOpenAiJson() => new()
    {
        ["batch_size"] = BatchSize is { } b ? JsonValue.Create(b) : "auto",
        ["learning_rate_multiplier"] = LearningRateMultiplier is { } m ? JsonValue.Create(m) : "auto",
        ["n_epochs"] = NEpochs is { } n ? JsonValue.Create(n) : "auto",
    };

    /// <summary>Everything, as echoed in <c>method.{type}.hyperparameters</c>.</summary>
    public JsonObject ToJson()
    {
        var json = ToOpenAiJson();
        if (Objective == TrainingObjective.Preference) json["beta"] = Beta is { } beta ? JsonValue.Create(beta) : "auto";
        json["lora_r"] = LoraR;
        json["lora_alpha"] = LoraAlpha;
        json["lora_dropout"] = LoraDropout;
        json["target_modules"] = new JsonArray(TargetModules.Select(t => (JsonNode)JsonValue.Create(t)).ToArray());
        json["use_rslora"] = UseRslora;
        json["use_dora"] = UseDora;
        json["init"] = Init.ToString().ToLowerInvariant();
        json["packing"] = Packing;
        json["gradient_checkpointing"] = GradientCheckpointing;
        json["scheduler"] = Scheduler.ToString().ToLowerInvariant();
        json["warmup_ratio"] = WarmupRatio;
        json["weight_decay"] = WeightDecay;
        json["eval_every_steps"] = EvalEverySteps is { } e ? JsonValue.Create(e) : "auto";
        json["checkpoint_every_steps"] = CheckpointEverySteps;
        json["learning_rate"] = LearningRate is { } r ? JsonValue.Create(r) : "auto";
        return json;
    }

    /// <summary>Reads a <c>hyperparameters</c> object, naming the offending field (<paramref name="path"/>.key) on error.</summary>
    public static JobHyperparameters Parse(JsonElement json, string path, bool allowExtensions, TrainingObjective objective = TrainingObjective.Supervised) =>
        Parse(json, path, allowExtensions, objective, stored: false);

    private static JobHyperparameters Parse(JsonElement json, string path, bool allowExtensions, TrainingObjective objective, bool stored)
    {
        if (json.ValueKind != JsonValueKind.Object) throw Invalid(path, "must be an object");
        var h = new JobHyperparameters { Objective = objective };
        foreach (var property in json.EnumerateObject())
        {
            var param = $"{path}.{property.Name}";
            var value = property.Value;
            if (value.ValueKind == JsonValueKind.Null) continue; // the SDKs send null for "not given"
            h = property.Name switch
            {
                "batch_size" => h with { BatchSize = AutoOr(value, param, v => Integer(v, param, 1, MaxBatchSize)) },
                "learning_rate_multiplier" => h with { LearningRateMultiplier = AutoOr(value, param, v => Number(v, param, 0, 100, exclusiveMin: true)) },
                "n_epochs" => h with { NEpochs = AutoOr(value, param, v => Integer(v, param, 1, MaxEpochs)) },
                "beta" when objective == TrainingObjective.Preference => h with { Beta = AutoOr(value, param, v => Number(v, param, 0, MaxBeta, exclusiveMin: true)) },
                "beta" => throw Invalid(param, "is a DPO hyperparameter: send it in method.dpo.hyperparameters with method type 'dpo'"),
                "learning_rate" when stored => h,
                "learning_rate" => throw Invalid(param, "is resolved by gpud from the model size; scale it with learning_rate_multiplier"),
                _ when !allowExtensions => throw Invalid(param, "is not a hyperparameter of the deprecated top-level 'hyperparameters' (use method.supervised.hyperparameters for LoRA settings)"),
                "lora_r" => h with { LoraR = Integer(value, param, 1, MaxRank) },
                "lora_alpha" => h with { LoraAlpha = Number(value, param, 0, 1e6, exclusiveMin: true) },
                "lora_dropout" => h with { LoraDropout = Number(value, param, 0, 1, exclusiveMax: true) },
                "target_modules" => h with { TargetModules = Targets(value, param) },
                "use_rslora" => h with { UseRslora = Boolean(value, param) },
                "use_dora" => h with { UseDora = Boolean(value, param) },
                "init" => h with { Init = Choice(value, param, new Dictionary<string, LoraInit> { ["gaussian"] = LoraInit.Gaussian, ["pissa"] = LoraInit.Pissa }) },
                "packing" => h with { Packing = Boolean(value, param) },
                "gradient_checkpointing" => h with { GradientCheckpointing = Boolean(value, param) },
                "scheduler" => h with
                {
                    Scheduler = Choice(value, param, new Dictionary<string, LearningRateSchedule>
                    {
                        ["linear"] = LearningRateSchedule.Linear, ["cosine"] = LearningRateSchedule.Cosine, ["constant"] = LearningRateSchedule.Constant,
                    }),
                },
                "warmup_ratio" => h with { WarmupRatio = Number(value, param, 0, 1, exclusiveMax: true) },
                "weight_decay" => h with { WeightDecay = Number(value, param, 0, 1) },
                "eval_every_steps" => h with { EvalEverySteps = AutoOr(value, param, v => Integer(v, param, 0, int.MaxValue)) },
                "checkpoint_every_steps" => h with { CheckpointEverySteps = Integer(value, param, 0, int.MaxValue) },
                _ => throw Invalid(param, "is not a supported hyperparameter"),
            };
        }
        return h;
    }

    /// <summary>The job's stored <c>method</c> object: <c>{"type":"supervised","supervised":{"hyperparameters":{…}}}</c>, or the same with <c>dpo</c>.</summary>
    public string ToMethodJson() => new JsonObject
    {
        ["type"] = MethodType,
        [MethodType] = new JsonObject { ["hyperparameters"] = ToJson() },
    }.ToJsonString();

    /// <summary>Reads a stored <c>method</c> object back (written by <see cref="ToMethodJson"/>).</summary>
    public static JobHyperparameters FromMethodJson(string method)
    {
        using var document = JsonDocument.Parse(method);
        var type = document.RootElement.GetProperty("type").GetString()!;
        var objective = type == "dpo" ? TrainingObjective.Preference : TrainingObjective.Supervised;
        return FromJson(document.RootElement.GetProperty(type).GetProperty("hyperparameters"), objective);
    }

    /// <summary>Reads the stored JSON back (written by <see cref="ToJson"/>, so already valid).</summary>
    private static JobHyperparameters FromJson(JsonElement json, TrainingObjective objective) => Parse(json, "hyperparameters", allowExtensions: true, objective, stored: true) with
    {
        LearningRate = json.TryGetProperty("learning_rate", out var rate) && rate.ValueKind == JsonValueKind.Number ? rate.GetDouble() : null,
    };

    private static T? AutoOr<T>(JsonElement value, string param, Func<JsonElement, T> parse) where T : struct =>
        value.ValueKind == JsonValueKind.String
            ? value.GetString() == "auto" ? null : throw Invalid(param, "must be \"auto\" or a number")
            : parse(value);

    private static List<string> Targets(JsonElement value, string param)
    {
        var names = value.ValueKind switch
        {
            JsonValueKind.String => [value.GetString()!],
            JsonValueKind.Array when value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.String) =>
                value.EnumerateArray().Select(e => e.GetString()!).ToList(),
            _ => throw Invalid(param, "must be \"all-linear\" or a list of module names", "invalid_type"),
        };
        var valid = LoraSettings.AllLinear.Append("all-linear").ToHashSet(StringComparer.Ordinal);
        var unknown = names.Where(n => !valid.Contains(n)).ToList();
        if (names.Count == 0 || unknown.Count > 0)
            throw Invalid(param, $"must name modules among {string.Join(", ", valid)}" + (unknown.Count > 0 ? $" (unknown: {string.Join(", ", unknown)})" : ""));
        return names.Distinct(StringComparer.Ordinal).ToList();
    }

}
