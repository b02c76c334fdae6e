using System.Diagnostics;
using Gpud.Engine.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Gpud.Engine.Training;

/// <summary>Learning-rate schedules, with linear warm-up first, as transformers' get_scheduler defines them.</summary>
public enum LearningRateSchedule
{
    Linear,
    Cosine,
    Constant,
}

/// <summary>
/// How a LoRA adapter is trained. <see cref="BatchSize"/> counts sequences per optimizer step.
/// <see cref="ActivationCheckpointing"/> keeps only each decoder layer's input and recomputes the layer during backward
/// (long contexts: activation memory of one layer instead of all, for about a third more compute);
/// <see cref="LogitChunkBytes"/> bounds the f32 logits alive at once.
/// </summary>
public sealed record TrainingOptions(
    int Epochs,
    int BatchSize,
    double LearningRate,
    long Seed,
    LearningRateSchedule Schedule = LearningRateSchedule.Linear,
    double WarmupRatio = 0,
    double WeightDecay = 0,
    double MaxGradNorm = 1.0,
    bool Packing = true,
    int MaxLength = 2048,
    int MaxTokensPerMicroBatch = 8192,
    double Beta1 = 0.9,
    double Beta2 = 0.999,
    double Epsilon = 1e-8,
    int EvalEverySteps = 0,
    int EvalSampleSequences = 32,
    bool ActivationCheckpointing = false,
    long LogitChunkBytes = TrainingLoss.DefaultLogitChunkBytes,
    double Beta = PreferenceLoss.DefaultBeta);

/// <summary>What one optimizer step did (the job service turns it into events and metrics).</summary>
public sealed record TrainingProgress(
    int Step,
    int TotalSteps,
    double Epoch,
    double TrainLoss,
    double TrainAccuracy,
    double LearningRate,
    double TokensPerSecond,
    long TrainedTokens,
    TimeSpan Elapsed,
    TimeSpan Remaining,
    double? ValidLoss = null,
    double? ValidMeanTokenAccuracy = null,
    double? FullValidLoss = null,
    double? FullValidMeanTokenAccuracy = null)
{
    /// <summary>Preference training: the share of the step's pairs whose preferred answer earned the higher reward.</summary>
    public double? RewardAccuracy { get; init; }

    /// <summary>Preference training: the mean reward of preferred minus non-preferred answers (β × log-ratio gain).</summary>
    public double? RewardMargin { get; init; }
}

/// <summary>
/// LoRA training, supervised (<see cref="Train(IReadOnlyList{TrainingExample}, ITrainingSink, string?, IReadOnlyList{TrainingExample}?, CancellationToken)"/>)
/// or on preferences (<see cref="TrainPreferences"/>). Supervised: per epoch the sequences are shuffled with the seed, cut into steps of
/// <see cref="TrainingOptions.BatchSize"/> sequences, each step packed (or padded) into micro-batches whose gradients
/// accumulate; the loss is the mean over the step's trained tokens, gradients are clipped, and AdamW (weight decay on
/// matrices only) steps with the scheduled rate. Dropout draws from the job's own generator, never libtorch's global
/// one. Same seed, same data, CPU → the same loss at every step, whatever else runs in the process.
/// </summary>
public sealed partial class LoraTrainer(CausalLanguageModel model, IReadOnlyList<Parameter> parameters, TrainingOptions options)
{
    private const string StateFile = "trainer_state.json";
    private const string OptimizerFile = "optimizer.safetensors";
    private const string TorchSharpOptimizerFile = "optimizer.bin"; // written by gpud before FlatAdamW
    private const string RngFile = "rng_state.bin";
    private const string AdapterStateFile = "adapter_state.safetensors";

    // The objectives (nested types) reach the primary constructor's state through these.
    private CausalLanguageModel Model => model;

    private TrainingOptions Options => options;

    public int TotalSteps(int sequences) => options.Epochs * (int)Math.Ceiling(sequences / (double)options.BatchSize);

    /// <summary>The rate at optimizer step <paramref name="step"/> (1-based) of <paramref name="total"/>.</summary>
    public static double ScheduledRate(TrainingOptions options, int step, int total)
    {
        ArgumentNullException.ThrowIfNull(options);
        var warmup = (int)Math.Ceiling(total * options.WarmupRatio);
        var current = step - 1; // transformers' schedulers count steps taken so far
        if (current < warmup) return options.LearningRate * (current + 1) / (double)warmup;
        var progress = total == warmup ? 1 : (current - warmup) / (double)(total - warmup);
        return options.Schedule switch
        {
            LearningRateSchedule.Linear => options.LearningRate * Math.Max(0, 1 - progress),
            LearningRateSchedule.Cosine => options.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * progress)),
            _ => options.LearningRate,
        };
    }

    /// <param name="checkpointTo">Asked after every step (with whether it ended an epoch); a directory means
    /// "write a checkpoint there now" (the adapter in PEFT format plus the state <paramref name="resumeFrom"/> needs).</param>
    /// <param name="exportAdapter">Writes the adapter in PEFT format into a checkpoint directory.</param>
    /// <param name="resumeFrom">A checkpoint directory written by this trainer.</param>
    /// <param name="validation">Sequences to evaluate on (see <see cref="Train(IReadOnlyList{TrainingExample}, ITrainingSink, string?, IReadOnlyList{TrainingExample}?, CancellationToken)"/>).</param>
    public void Train(IReadOnlyList<TrainingExample> sequences, Action<TrainingProgress>? onStep = null,
        Func<int, bool, string?>? checkpointTo = null, Action<string>? exportAdapter = null, string? resumeFrom = null,
        IReadOnlyList<TrainingExample>? validation = null, CancellationToken cancellationToken = default) =>
        Train(sequences, new DelegateSink(onStep, checkpointTo, exportAdapter), resumeFrom, validation, cancellationToken);

    /// <summary>Trains until the last step, or until <paramref name="sink"/> asks to stop after a step.</summary>
    /// <param name="resumeFrom">A checkpoint directory written by this trainer: training continues after its step,
    /// on CPU exactly as if it had never stopped.</param>
    /// <param name="validation">Sequences to evaluate on: a rotating sample every <see cref="TrainingOptions.EvalEverySteps"/>
    /// steps (valid_loss, valid_mean_token_accuracy) and all of them at each epoch end (full_valid_*).</param>
    /// <param name="cancellationToken">Checked between micro-batches: a cancel is honoured within one optimizer step.</param>
    /// <returns>True if every step ran; false if the sink stopped training early (after writing a checkpoint if it asked for one).</returns>
    /// <exception cref="OutOfDeviceMemoryException">The device ran out of memory.</exception>
    public bool Train(IReadOnlyList<TrainingExample> sequences, ITrainingSink sink, string? resumeFrom = null,
        IReadOnlyList<TrainingExample>? validation = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        return Run(new SupervisedObjective(this, sequences, validation ?? []), sink, resumeFrom, cancellationToken);
    }

    /// <summary>
    /// Trains on preference pairs with DPO (<see cref="PreferenceLoss"/>, β = <see cref="TrainingOptions.Beta"/>): a step
    /// takes <see cref="TrainingOptions.BatchSize"/> pairs. The reference policy is the model as it starts (before any
    /// step: the base model, whatever the adapter's init), scored once over every pair and kept with each checkpoint, so a
    /// resumed run compares against the same reference. Reports the DPO loss, the preferred answers' token accuracy, and
    /// the reward accuracy and margin of each step.
    /// </summary>
    /// <exception cref="OutOfDeviceMemoryException">The device ran out of memory.</exception>
    public bool TrainPreferences(IReadOnlyList<PreferencePair> pairs, ITrainingSink sink, string? resumeFrom = null,
        IReadOnlyList<PreferencePair>? validation = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        return Run(new PreferenceObjective(this, pairs, validation ?? []), sink, resumeFrom, cancellationToken);
    }

    private bool Run(IObjective objective, ITrainingSink sink, string? resumeFrom, CancellationToken cancellationToken)
    {
        try
        {
            return WithOptimizer(objective, sink, resumeFrom, cancellationToken);
        }
        catch (System.Runtime.InteropServices.ExternalException e) when (OutOfDeviceMemoryException.Matches(e))
        {
            throw new OutOfDeviceMemoryException(e);
        }
    }

    private bool WithOptimizer(IObjective objective, ITrainingSink sink, string? resumeFrom, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(sink);
        using var dropoutRng = new torch.Generator((ulong)options.Seed); // CPU: it seeds CounterRandom on the device
        foreach (var (_, _, layer) in Lora.LoraModel.Projections(model))
        {
            if (layer.Adapter is { } adapter) adapter.DropoutGenerator = dropoutRng;
        }
        using var optimizer = new FlatAdamW(parameters, options.Beta1, options.Beta2, options.Epsilon, options.WeightDecay, computeDtype: model.DType);
        var adapters = Lora.LoraModel.Projections(model).Select(p => p.Layer.Adapter).OfType<Lora.LoraAdapter>().Where(a => a.IsAdditive).ToList();
        foreach (var adapter in adapters) adapter.UseComputeCopies(optimizer.ComputeCopy(adapter.A), optimizer.ComputeCopy(adapter.B));
        try
        {
            return RunSteps(objective, sink, resumeFrom, optimizer, dropoutRng, cancellationToken);
        }
        finally
        {
            // The copies die with the optimizer; the adapters go back to casting (evaluation, serving from this model).
            foreach (var adapter in adapters) adapter.UseComputeCopies(null, null);
        }
    }

    private bool RunSteps(IObjective objective, ITrainingSink sink, string? resumeFrom, FlatAdamW optimizer, torch.Generator dropoutRng,
        CancellationToken cancellationToken)
    {
        var total = TotalSteps(objective.Count);
        var watch = Stopwatch.StartNew();
        long trainedTokens = 0;
        long tokensSeen = 0;
        var step = 0;
        var resumeEpoch = 0;
        var resumeStart = 0;
        if (resumeFrom is not null)
        {
            objective.Load(resumeFrom);
            (step, resumeEpoch, resumeStart, trainedTokens) = Resume(resumeFrom, optimizer, dropoutRng);
            optimizer.RefreshComputeCopies(); // the values were just read into the float32 parameters
        }
        else
        {
            objective.Prepare();
        }
        model.train();
        for (var epoch = resumeEpoch; epoch < options.Epochs; epoch++)
        {
            // The order depends only on (seed, epoch), so a resumed run needs no shuffling state.
            var order = Enumerable.Range(0, objective.Count).ToArray();
            new Random(unchecked((int)(options.Seed * 1_000_003 + epoch))).Shuffle(order);
            for (var start = epoch == resumeEpoch ? resumeStart : 0; start < order.Length; start += options.BatchSize)
            {
                cancellationToken.ThrowIfCancellationRequested();
                step++;
                var rate = ScheduledRate(options, step, total);
                var items = order.Skip(start).Take(options.BatchSize).ToList();
                var next = start + options.BatchSize;
                var endOfEpoch = next >= order.Length;
                StepResult result;
                Evaluation? sample = null, full = null;
                using (sink.BeginStep(step))
                {
                    result = objective.Step(items, dropoutRng, optimizer.AccumulateComputeGradients, cancellationToken);
                    tokensSeen += result.Tokens;
                    if (result.TrainedTokens > 0)
                    {
                        // As torch.optim skips parameters without a gradient, a step that trained nothing changes nothing.
                        optimizer.ClipGradNorm(options.MaxGradNorm).Dispose();
                        optimizer.Step(rate);
                        optimizer.ZeroGrad();
                    }
                    trainedTokens += result.TrainedTokens;

                    if (objective.ValidationCount > 0)
                    {
                        if (options.EvalEverySteps > 0 && step % options.EvalEverySteps == 0)
                        {
                            var from = (step / options.EvalEverySteps - 1) * options.EvalSampleSequences;
                            sample = WithoutTraining(() => objective.Evaluate(Enumerable.Range(from, Math.Min(options.EvalSampleSequences, objective.ValidationCount))
                                .Select(i => i % objective.ValidationCount).ToList()));
                        }
                        if (endOfEpoch) full = WithoutTraining(() => objective.Evaluate(Enumerable.Range(0, objective.ValidationCount).ToList()));
                    }
                }

                var elapsed = watch.Elapsed;
                sink.OnStep(new TrainingProgress(step, total, epoch + (start + items.Count) / (double)order.Length,
                    result.Loss, result.Accuracy, rate,
                    tokensSeen / Math.Max(elapsed.TotalSeconds, 1e-9), trainedTokens, elapsed,
                    TimeSpan.FromSeconds(elapsed.TotalSeconds / step * (total - step)),
                    sample?.Loss, sample?.Accuracy, full?.Loss, full?.Accuracy)
                {
                    RewardAccuracy = result.RewardAccuracy,
                    RewardMargin = result.RewardMargin,
                });

                if (sink.CheckpointDirectory(step, endOfEpoch) is { } directory)
                {
                    Checkpoint(directory, optimizer, dropoutRng, step, endOfEpoch ? epoch + 1 : epoch, endOfEpoch ? 0 : next, trainedTokens, sink, objective);
                    sink.OnCheckpoint(step, directory, endOfEpoch);
                }
                if (step < total && sink.StopAfterStep(step))
                {
                    model.eval();
                    return false;
                }
            }
        }
        model.eval();
        return true;
    }

    /// <summary>Mean token loss and accuracy over <paramref name="sequences"/>, without gradients or dropout.</summary>
    public (double Loss, double Accuracy) Evaluate(IReadOnlyList<TrainingExample> sequences)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        var result = WithoutTraining(() => new SupervisedObjective(this, [], sequences).Evaluate(Enumerable.Range(0, sequences.Count).ToList()));
        return (result.Loss, result.Accuracy);
    }

    /// <summary>Runs <paramref name="evaluate"/> in eval mode (no dropout) without gradients, then restores the mode.</summary>
    private T WithoutTraining<T>(Func<T> evaluate)
    {
        var wasTraining = model.training;
        model.eval();
        try
        {
            using var _ = no_grad();
            return evaluate();
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    /// <summary>Writes everything a resume needs, atomically, next to the exported PEFT adapter.</summary>
    private void Checkpoint(string directory, FlatAdamW optimizer, torch.Generator dropoutRng, int step, int epoch, int start, long trainedTokens,
        ITrainingSink sink, IObjective objective)
    {
        IO.AtomicDirectory.Write(directory, temp =>
        {
            sink.ExportAdapter(temp);
            objective.Save(temp);
            var tensors = new List<Weights.TensorData>();
            for (var i = 0; i < parameters.Count; i++)
            {
                using var cpu = parameters[i].detach().to(CPU).contiguous();
                tensors.Add(new Weights.TensorData($"p{i}", "F32", cpu.shape, cpu.bytes.ToArray()));
            }
            Weights.SafetensorsWriter.Write(Path.Combine(temp, AdapterStateFile), tensors);
            optimizer.Save(Path.Combine(temp, OptimizerFile));
            using (var rng = dropoutRng.get_state())
                File.WriteAllBytes(Path.Combine(temp, RngFile), rng.bytes.ToArray());
            File.WriteAllText(Path.Combine(temp, StateFile), System.Text.Json.JsonSerializer.Serialize(
                new CheckpointState(step, epoch, start, trainedTokens, options.Seed, parameters.Count)));
        });
    }

    private (int Step, int Epoch, int Start, long TrainedTokens) Resume(string directory, FlatAdamW optimizer, torch.Generator dropoutRng)
    {
        var state = System.Text.Json.JsonSerializer.Deserialize<CheckpointState>(File.ReadAllText(Path.Combine(directory, StateFile)))
                    ?? throw new InvalidDataException($"{directory}: {StateFile} is empty.");
        if (state.Parameters != parameters.Count || state.Seed != options.Seed)
            throw new InvalidOperationException($"{directory} was written for another adapter layout or seed.");
        using (var weights = new Weights.SafetensorsFile(Path.Combine(directory, AdapterStateFile)))
        using (no_grad())
        {
            for (var i = 0; i < parameters.Count; i++)
            {
                using var saved = weights.Read($"p{i}", ScalarType.Float32);
                parameters[i].copy_(saved);
            }
        }
        if (File.Exists(Path.Combine(directory, OptimizerFile))) optimizer.Load(Path.Combine(directory, OptimizerFile));
        else optimizer.LoadTorchSharpState(Path.Combine(directory, TorchSharpOptimizerFile));
        using (var rng = dropoutRng.get_state())
        {
            var bytes = File.ReadAllBytes(Path.Combine(directory, RngFile));
            using var restored = tensor(bytes, dtype: rng.dtype);
            dropoutRng.set_state(restored);
        }
        return (state.Step, state.Epoch, state.Start, state.TrainedTokens);
    }

    /// <summary>
    /// Removes from a checkpoint directory written by this trainer what only a resume reads (optimizer moments, the
    /// f32 adapter state, RNG, the objective's state), leaving the exported adapter servable. For checkpoints of jobs
    /// that have ended: the resume state is most of a checkpoint's size (the optimizer alone is twice the adapter in f32).
    /// </summary>
    /// <returns>The bytes freed.</returns>
    public static long DiscardResumeState(string directory)
    {
        long freed = 0;
        foreach (var name in (string[])[StateFile, OptimizerFile, TorchSharpOptimizerFile, RngFile, AdapterStateFile, PreferenceObjective.ReferenceFile])
        {
            var file = new FileInfo(Path.Combine(directory, name));
            if (!file.Exists) continue;
            freed += file.Length;
            file.Delete();
        }
        return freed;
    }

    /// <summary>The step a checkpoint directory written by this trainer resumes after.</summary>
    public static int CheckpointStep(string directory) =>
        System.Text.Json.JsonSerializer.Deserialize<CheckpointState>(File.ReadAllText(Path.Combine(directory, StateFile)))?.Step
        ?? throw new InvalidDataException($"{directory}: {StateFile} is empty.");

    private sealed record CheckpointState(int Step, int Epoch, int Start, long TrainedTokens, long Seed, int Parameters);

    private IEnumerable<List<BatchRow>> MicroBatches(List<BatchRow> rows)
    {
        var current = new List<BatchRow>();
        var width = 0;
        foreach (var row in rows)
        {
            var newWidth = Math.Max(width, row.Length);
            if (current.Count > 0 && newWidth * (current.Count + 1) > options.MaxTokensPerMicroBatch)
            {
                yield return current;
                current = [];
                newWidth = row.Length;
            }
            current.Add(row);
            width = newWidth;
        }
        if (current.Count > 0) yield return current;
    }

    private sealed class DelegateSink(Action<TrainingProgress>? onStep, Func<int, bool, string?>? checkpointTo, Action<string>? exportAdapter) : ITrainingSink
    {
        public void OnStep(TrainingProgress progress) => onStep?.Invoke(progress);

        public string? CheckpointDirectory(int step, bool endOfEpoch) => checkpointTo?.Invoke(step, endOfEpoch);

        public void ExportAdapter(string directory) => exportAdapter?.Invoke(directory);
    }
}
