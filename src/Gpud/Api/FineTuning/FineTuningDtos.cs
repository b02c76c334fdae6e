using System.Text.Json;
using System.Text.Json.Serialization;
using Gpud.Services.FineTuning;
using Gpud.Storage.FineTuning;

namespace Gpud.Api.FineTuning;

/// <summary>
/// OpenAI's fine-tuning job object. Every OpenAI key is always present (null until known); the gpud extensions
/// (<c>queue_position</c>, <c>estimated_start</c>, <c>device</c>, <c>stage</c>, <c>progress</c>, <c>cost</c>,
/// <c>dataset</c>) come last and are named so they cannot clash with OpenAI's.
/// </summary>
public sealed record FineTuningJobObject(
    string Id,
    string Object,
    long CreatedAt,
    JobErrorObject? Error,
    string? FineTunedModel,
    long? FinishedAt,
    HyperparametersObject Hyperparameters,
    string Model,
    string OrganizationId,
    IReadOnlyList<string> ResultFiles,
    string Status,
    long? TrainedTokens,
    string TrainingFile,
    string? ValidationFile,
    long Seed,
    long? EstimatedFinish,
    MethodObject Method,
    IReadOnlyDictionary<string, string>? Metadata,
    IReadOnlyList<object>? Integrations,
    string? UserProvidedSuffix,
    int? QueuePosition,
    long? EstimatedStart,
    string? Device,
    string? Stage,
    JobProgress? Progress,
    JobCost? Cost,
    JobDataset? Dataset)
{
    public static FineTuningJobObject From(FineTuningJobView view)
    {
        ArgumentNullException.ThrowIfNull(view);
        var job = view.Record;
        var h = view.Hyperparameters;
        return new FineTuningJobObject(
            job.Id,
            "fine_tuning.job",
            job.CreatedAt,
            view.Error is { } e ? new JobErrorObject(e.Code, e.Message, e.Param) : null,
            job.FineTunedModel,
            job.FinishedAt,
            HyperparametersObject.From(h),
            job.ParentModel ?? job.Model,
            FineTuningJobView.Organization(job.Project),
            view.ResultFiles,
            job.Status,
            job.TrainedTokens,
            job.TrainingFile,
            job.ValidationFile,
            job.Seed,
            job.Status is JobStatus.Running or JobStatus.Queued ? job.EstimatedFinish : null,
            MethodObject.From(h),
            view.Metadata,
            [],
            job.Suffix,
            view.QueuePosition,
            view.EstimatedStart,
            job.Device,
            job.Stage,
            view.Progress,
            view.Cost,
            view.Dataset);
    }
}

/// <summary>Why a job failed: OpenAI's <c>{code, message, param}</c>.</summary>
public sealed record JobErrorObject(string Code, string Message, string? Param);

/// <summary>OpenAI's three hyperparameters: <c>"auto"</c> until the training file has been read, then the values used.</summary>
public sealed record HyperparametersObject(object BatchSize, object LearningRateMultiplier, object NEpochs)
{
    public static HyperparametersObject From(JobHyperparameters h)
    {
        ArgumentNullException.ThrowIfNull(h);
        return new((object?)h.BatchSize ?? "auto", (object?)h.LearningRateMultiplier ?? "auto", (object?)h.NEpochs ?? "auto");
    }
}

/// <summary>OpenAI's <c>method</c>: its <c>type</c> (<c>supervised</c> or <c>dpo</c>) and that type's settings under its name.</summary>
public sealed record MethodObject(
    string Type,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] MethodSettingsObject? Supervised,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] MethodSettingsObject? Dpo = null)
{
    public static MethodObject From(JobHyperparameters h)
    {
        ArgumentNullException.ThrowIfNull(h);
        var settings = new MethodSettingsObject(MethodHyperparametersObject.From(h));
        return h.MethodType == "dpo" ? new MethodObject("dpo", null, settings) : new MethodObject("supervised", settings);
    }
}

public sealed record MethodSettingsObject(MethodHyperparametersObject Hyperparameters);

/// <summary>
/// <c>method.{supervised|dpo}.hyperparameters</c>: OpenAI's three (and DPO's <c>beta</c>), then gpud's LoRA settings
/// (send them as extra fields of the same object, e.g. through an SDK's <c>extra_body</c>), all echoed resolved.
/// </summary>
public sealed record MethodHyperparametersObject(
    object BatchSize,
    object LearningRateMultiplier,
    object NEpochs,
    int LoraR,
    double LoraAlpha,
    double LoraDropout,
    IReadOnlyList<string> TargetModules,
    bool UseRslora,
    bool UseDora,
    string Init,
    bool Packing,
    bool GradientCheckpointing,
    string Scheduler,
    double WarmupRatio,
    double WeightDecay,
    object EvalEverySteps,
    int CheckpointEverySteps,
    object LearningRate,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] object? Beta)
{
    public static MethodHyperparametersObject From(JobHyperparameters h)
    {
        ArgumentNullException.ThrowIfNull(h);
        return new((object?)h.BatchSize ?? "auto", (object?)h.LearningRateMultiplier ?? "auto", (object?)h.NEpochs ?? "auto",
            h.LoraR, h.LoraAlpha, h.LoraDropout, h.TargetModules, h.UseRslora, h.UseDora, h.Init.ToString().ToLowerInvariant(), h.Packing, h.GradientCheckpointing,
            h.Scheduler.ToString().ToLowerInvariant(), h.WarmupRatio, h.WeightDecay, (object?)h.EvalEverySteps ?? "auto",
            h.CheckpointEverySteps, (object?)h.LearningRate ?? "auto",
            h.MethodType == "dpo" ? (object?)h.Beta ?? "auto" : null);
    }
}

public sealed record FineTuningJobList(string Object, IReadOnlyList<FineTuningJobObject> Data, bool HasMore);

/// <summary>OpenAI's fine-tuning job event; <c>data</c> holds the step metrics of <c>metrics</c> events.</summary>
public sealed record FineTuningJobEventObject(string Id, string Object, long CreatedAt, string Level, string Message, string Type, JsonElement? Data)
{
    public static FineTuningJobEventObject From(JobEventRecord e)
    {
        ArgumentNullException.ThrowIfNull(e);
        return new(e.Id, "fine_tuning.job.event", e.CreatedAt, e.Level, e.Message, e.Type,
            e.Data is null ? null : JsonDocument.Parse(e.Data).RootElement.Clone());
    }
}

public sealed record FineTuningJobEventList(string Object, IReadOnlyList<FineTuningJobEventObject> Data, bool HasMore);

/// <summary>OpenAI's fine-tuning checkpoint: the model name serves it once inference knows it.</summary>
public sealed record FineTuningJobCheckpointObject(
    string Id, string Object, long CreatedAt, string FineTunedModelCheckpoint, string FineTuningJobId, int StepNumber, JsonElement Metrics)
{
    public static FineTuningJobCheckpointObject From(JobCheckpointRecord c)
    {
        ArgumentNullException.ThrowIfNull(c);
        return new(c.Id, "fine_tuning.job.checkpoint", c.CreatedAt, c.FineTunedModelCheckpoint, c.JobId, c.StepNumber,
            JsonDocument.Parse(c.Metrics).RootElement.Clone());
    }
}

public sealed record FineTuningJobCheckpointList(string Object, IReadOnlyList<FineTuningJobCheckpointObject> Data, string? FirstId, string? LastId, bool HasMore);

/// <summary>The body of <c>POST /v1/fine_tuning/jobs</c>, for the OpenAPI document (the endpoint validates the JSON itself).</summary>
public sealed record CreateFineTuningJobRequest(
    string Model,
    string TrainingFile,
    string? ValidationFile,
    string? Suffix,
    long? Seed,
    IReadOnlyDictionary<string, string>? Metadata,
    HyperparametersObject? Hyperparameters,
    MethodObject? Method,
    IReadOnlyList<object>? Integrations);
