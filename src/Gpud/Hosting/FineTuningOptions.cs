using Microsoft.Extensions.Options;

namespace Gpud.Hosting;

/// <summary>One entry of <c>Gpud:Devices</c>: a device fine-tuning jobs run on, one at a time.</summary>
public sealed class DeviceOptions
{
    /// <summary><c>cuda:N</c> or <c>cpu</c>.</summary>
    public string Name { get; set; } = "";

    /// <summary>What an hour of this device costs, for the jobs' cost estimate (any currency; unset: no estimate).</summary>
    public double? HourlyPrice { get; set; }
}

/// <summary>
/// Fine-tuning settings: <c>Gpud:Devices</c> (default every CUDA device, or the CPU when there is none) and
/// <c>Gpud:Training</c>.
/// </summary>
public sealed class FineTuningOptions
{
    public List<DeviceOptions> Devices { get; set; } = [];

    public TrainingSection Training { get; set; } = new();

    public sealed class TrainingSection
    {
        /// <summary>Checkpoints each job keeps (OpenAI keeps the last 3).</summary>
        public int KeepCheckpoints { get; set; } = 3;

        /// <summary>Training examples are truncated to this many tokens (or the model's context, if shorter).</summary>
        public int MaxSequenceLength { get; set; } = 2048;

        /// <summary>At most one metrics event per this many milliseconds (the last step always gets one).</summary>
        public int MetricsEventIntervalMs { get; set; } = 1000;
    }
}

internal sealed class FineTuningOptionsValidator : IValidateOptions<FineTuningOptions>
{
    public ValidateOptionsResult Validate(string? name, FineTuningOptions options)
    {
        var failures = new List<string>();
        for (var i = 0; i < options.Devices.Count; i++)
        {
            var device = options.Devices[i];
            if (!Engine.Compute.ComputeDevice.IsValidId(device.Name))
                failures.Add($"Gpud:Devices:{i}:Name must be 'cpu' or 'cuda:N' (got '{device.Name}').");
            if (device.HourlyPrice is < 0 or double.NaN)
                failures.Add($"Gpud:Devices:{i}:HourlyPrice must not be negative.");
        }
        foreach (var duplicate in options.Devices.GroupBy(d => d.Name).Where(g => g.Count() > 1))
            failures.Add($"Gpud:Devices names {duplicate.Key} more than once (one job runs per device).");
        if (options.Training.KeepCheckpoints is < 1 or > 1000)
            failures.Add($"Gpud:Training:KeepCheckpoints must be between 1 and 1000 (got {options.Training.KeepCheckpoints}).");
        if (options.Training.MaxSequenceLength is < 16 or > 1 << 20)
            failures.Add($"Gpud:Training:MaxSequenceLength must be between 16 and {1 << 20} (got {options.Training.MaxSequenceLength}).");
        if (options.Training.MetricsEventIntervalMs is < 0 or > 3_600_000)
            failures.Add($"Gpud:Training:MetricsEventIntervalMs must be between 0 and 3600000 (got {options.Training.MetricsEventIntervalMs}).");
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
