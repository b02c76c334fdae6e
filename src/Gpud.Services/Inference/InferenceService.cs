using System.Collections.Concurrent;
using Gpud.Engine.Compute;
using Gpud.Services.Devices;
using Gpud.Services.FineTuning;
using Gpud.Services.Models;
using Microsoft.Extensions.Logging;

namespace Gpud.Services.Inference;

/// <summary>
/// The serving side: one <see cref="ModelServer"/> per base model, started by the first request for it or any of its
/// adapters, all sharing one host-memory adapter cache. Fine-tuned models, checkpoints and imported adapters are
/// rows of their base model's batch; the base is loaded once per device and never for an adapter switch.
/// </summary>
public sealed class InferenceService(
    ComputeBackend backend,
    InferenceSettings settings,
    FineTuningSettings fineTuning,
    InferenceMetrics metrics,
    DeviceTurns turns,
    ILoggerFactory loggers) : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<ModelServer>> _servers = new(StringComparer.Ordinal);
    private readonly AdapterHostCache _hostCache = new(settings.MaxHostAdapters, metrics);

    public InferenceSettings Settings => settings;

    /// <summary>Tokens a sequence of this base model may hold here (prompt + completion).</summary>
    public int ContextLength(BaseModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return Math.Min(settings.MaxModelLength, model.Config.MaxPositionEmbeddings);
    }

    /// <summary>
    /// Queues a request's prompts; read the returned run's events for the output. A <paramref name="batchPriority"/> run
    /// (the Batch API) is admitted only when no interactive request is waiting.
    /// </summary>
    public GenerationRun Submit(ServedModel model, IReadOnlyList<GenerationInput> inputs, CancellationToken cancellationToken, bool batchPriority = false)
    {
        ArgumentNullException.ThrowIfNull(model);
        var run = new GenerationRun(model.Base.Name, inputs, model.Base.Tokenizer, metrics, cancellationToken, batchPriority);
        Server(model.Base).Submit(run, model.AdapterDirectory);
        return run;
    }

    /// <summary>Drops a deleted adapter from every cache tier.</summary>
    public void Forget(string adapterDirectory)
    {
        _hostCache.Forget(adapterDirectory);
        foreach (var server in _servers.Values.Where(s => s.IsValueCreated)) server.Value.Forget(adapterDirectory);
    }

    public void Dispose()
    {
        foreach (var server in _servers.Values.Where(s => s.IsValueCreated)) server.Value.Dispose();
        _hostCache.Dispose();
    }

    private ModelServer Server(BaseModel model) =>
        _servers.GetOrAdd(model.Name, _ => new Lazy<ModelServer>(() =>
            new ModelServer(model, PickDevice(model), settings, metrics, _hostCache, turns, loggers.CreateLogger<ModelServer>()))).Value;

    /// <summary>
    /// The documented placement: Gpud:Inference:Device if set; else a CUDA device the model may use that fine-tuning
    /// does not (so training never slows serving), else the first CUDA device it may use (shared with training), else the CPU.
    /// </summary>
    private string PickDevice(BaseModel model)
    {
        if (settings.Device is { } configured) return configured;
        var cuda = (backend.Info ?? backend.Initialize()).Devices.Select(d => d.Id).Where(d => d.StartsWith("cuda:", StringComparison.Ordinal)).ToList();
        var allowed = model.Definition.Devices.Count == 0 ? cuda : cuda.Where(model.Definition.Devices.Contains).ToList();
        if (allowed.Count == 0) return "cpu";
        var training = fineTuning.Devices.Count == 0 ? allowed.ToHashSet() : fineTuning.Devices.Select(d => d.Name).ToHashSet();
        return allowed.FirstOrDefault(d => !training.Contains(d)) ?? allowed[0];
    }
}
