namespace Gpud.Engine.Training;

/// <summary>
/// Where a <see cref="LoraTrainer"/> reports and asks. The job service implements it to turn steps into events and
/// metrics and to decide when to checkpoint and when to stop (pause, shutdown). Called on the training thread.
/// </summary>
public interface ITrainingSink
{
    /// <summary>
    /// Before a step's first micro-batch; the result is disposed once the step (and its evaluation) has left the device.
    /// A device shared with serving uses it to interleave the two at step boundaries.
    /// </summary>
    IDisposable? BeginStep(int step) => null;

    /// <summary>After every optimizer step.</summary>
    void OnStep(TrainingProgress progress);

    /// <summary>After every step: a directory means "write a checkpoint there now"; null means none.</summary>
    string? CheckpointDirectory(int step, bool endOfEpoch);

    /// <summary>Writes the adapter in PEFT format into a checkpoint's (temporary) directory.</summary>
    void ExportAdapter(string directory);

    /// <summary>The checkpoint for <paramref name="step"/> is complete on disk (written atomically).</summary>
    void OnCheckpoint(int step, string directory, bool endOfEpoch)
    {
    }

    /// <summary>After a step and its checkpoint: true stops training there (the rest of the run is left undone).</summary>
    bool StopAfterStep(int step) => false;
}

/// <summary>The device ran out of memory while training; the job fails and the device is freed for the next one.</summary>
public sealed class OutOfDeviceMemoryException(Exception inner)
    : Exception("The device ran out of memory. Set the gradient_checkpointing hyperparameter to true, use a smaller batch_size, enable packing, or shorten the examples.", inner)
{
    /// <summary>libtorch reports allocation failures as "CUDA out of memory" (or "DefaultCPUAllocator: not enough memory").</summary>
    public static bool Matches(Exception e) =>
        e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase)
        || e.Message.Contains("not enough memory", StringComparison.OrdinalIgnoreCase);
}
