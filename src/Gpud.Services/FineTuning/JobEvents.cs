using System.Globalization;
using System.Text.Json;
using Gpud.Engine.Training;
using Gpud.Services.Ids;
using Gpud.Storage.FineTuning;

namespace Gpud.Services.FineTuning;

/// <summary>Builds job events with OpenAI's levels, types and message wording.</summary>
public sealed class JobEvents(TimeProvider time)
{
    public JobEventRecord Info(string jobId, string message) => New(jobId, "info", message, "message", null);

    public JobEventRecord Warn(string jobId, string message) => New(jobId, "warn", message, "message", null);

    public JobEventRecord Error(string jobId, string message) => New(jobId, "error", message, "message", null);

    /// <summary>A <c>metrics</c> event: OpenAI's <c>data</c> keys and its "Step N/M: training loss=…" message.</summary>
    public JobEventRecord Metrics(string jobId, TrainingProgress p)
    {
        ArgumentNullException.ThrowIfNull(p);
        var message = string.Create(CultureInfo.InvariantCulture, $"Step {p.Step}/{p.TotalSteps}: training loss={p.TrainLoss:F2}");
        if (p.ValidLoss is { } valid) message += string.Create(CultureInfo.InvariantCulture, $", validation loss={valid:F2}");
        if (p.FullValidLoss is { } full) message += string.Create(CultureInfo.InvariantCulture, $", full validation loss={full:F2}");
        return New(jobId, "info", message, "metrics", JsonSerializer.Serialize(MetricsData(p)));
    }

    /// <summary>
    /// The metrics of a step as OpenAI's events and checkpoints carry them; DPO steps add <c>train_reward_accuracy</c> and
    /// <c>train_reward_margin</c> (gpud extensions, TRL's rewards/accuracies and rewards/margins).
    /// </summary>
    public static Dictionary<string, object?> MetricsData(TrainingProgress p)
    {
        ArgumentNullException.ThrowIfNull(p);
        var data = new Dictionary<string, object?>
        {
            ["step"] = p.Step,
            ["total_steps"] = p.TotalSteps,
            ["train_loss"] = p.TrainLoss,
            ["train_mean_token_accuracy"] = p.TrainAccuracy,
            ["valid_loss"] = p.ValidLoss,
            ["valid_mean_token_accuracy"] = p.ValidMeanTokenAccuracy,
            ["full_valid_loss"] = p.FullValidLoss,
            ["full_valid_mean_token_accuracy"] = p.FullValidMeanTokenAccuracy,
        };
        if (p.RewardAccuracy is { } accuracy) data["train_reward_accuracy"] = accuracy;
        if (p.RewardMargin is { } margin) data["train_reward_margin"] = margin;
        return data;
    }

    private JobEventRecord New(string jobId, string level, string message, string type, string? data) =>
        new(ResourceId.New("ftevent-"), jobId, time.GetUtcNow().ToUnixTimeSeconds(), level, message, type, data);
}
