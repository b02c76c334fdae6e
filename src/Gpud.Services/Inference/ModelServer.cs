using Gpud.Engine.Generation;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Services.Devices;
using Gpud.Services.Errors;
using Gpud.Services.Models;
using Microsoft.Extensions.Logging;
using TorchSharp;

namespace Gpud.Services.Inference;

/// <summary>
/// Serves one base model on one device from a dedicated thread: the model is loaded once (the first request waits
/// for it), then every loop iteration admits waiting prompts into free batch rows (copying their adapter into a device
/// slot first if needed) and decodes one step for everything running. Requests for adapters still loading from disk
/// wait without holding up others; a full waiting queue answers 429.
/// </summary>
internal sealed partial class ModelServer : IDisposable
{
    private readonly BaseModel _base;
    private readonly InferenceSettings _settings;
    private readonly InferenceMetrics _metrics;
    private readonly AdapterHostCache _hostCache;
    private readonly DeviceTurns.DeviceLane _turns;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();
    private readonly List<Pending> _incoming = [];
    private readonly List<string> _forget = [];
    private readonly SemaphoreSlim _wake = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private readonly Prometheus.Counter.Child _decodePasses, _prefillPasses, _mixedPasses; // looked up once, counted every step
    private int _waiting; // incoming + not yet admitted, for 429 and the gauge
    private Exception? _loadFailure;

    // Owned by the serving thread.
    private readonly List<Pending> _queue = [];
    private readonly Dictionary<string, int> _slotOf = new(StringComparer.Ordinal);
    private readonly LinkedList<string> _slotRecency = new(); // most recent first

    public ModelServer(BaseModel baseModel, string device, InferenceSettings settings, InferenceMetrics metrics, AdapterHostCache hostCache,
        DeviceTurns turns, ILogger logger)
    {
        _turns = turns.Lane(device, DeviceWorkload.Serving);
        _base = baseModel;
        Device = device;
        _settings = settings;
        _metrics = metrics;
        _hostCache = hostCache;
        _logger = logger;
        (_decodePasses, _prefillPasses, _mixedPasses) = (metrics.ForwardPasses.WithLabels(baseModel.Name, "decode"),
            metrics.ForwardPasses.WithLabels(baseModel.Name, "prefill"), metrics.ForwardPasses.WithLabels(baseModel.Name, "mixed"));
        ContextLength = Math.Min(settings.MaxModelLength, baseModel.Config.MaxPositionEmbeddings);
        _thread = new Thread(Run) { IsBackground = true, Name = $"gpud-serve {baseModel.Name}" };
        _thread.Start();
    }

    public string Device { get; }

    /// <summary>Tokens a sequence may hold (prompt + completion).</summary>
    public int ContextLength { get; }

    public void Submit(GenerationRun run, string? adapterDirectory)
    {
        lock (_gate)
        {
            if (_loadFailure is { } failure)
                throw new InvalidOperationException($"The model '{_base.Name}' could not be loaded on {Device}: {failure.Message}", failure);
            if (_waiting + run.Inputs.Count > _settings.MaxWaitingRequests)
            {
                _metrics.Rejected.WithLabels(_base.Name).Inc();
                throw new GpudException(ErrorKind.TooManyRequests,
                    $"The model '{_base.Name}' has {_waiting} requests waiting (Gpud:Inference:MaxWaitingRequests is {_settings.MaxWaitingRequests}). Retry shortly.",
                    null, "server_overloaded");
            }
            for (var i = 0; i < run.Inputs.Count; i++) _incoming.Add(new Pending(run, i, adapterDirectory));
            _waiting += run.Inputs.Count;
            _metrics.Waiting.WithLabels(_base.Name).Set(_waiting);
        }
        _wake.Release();
    }

    /// <summary>Drops a deleted adapter from the device slots (at the next iteration).</summary>
    public void Forget(string adapterDirectory)
    {
        lock (_gate) _forget.Add(adapterDirectory);
        _wake.Release();
    }

    public void Dispose()
    {
        _stop.Cancel();
        _wake.Release();
        _thread.Join(TimeSpan.FromSeconds(30));
        _stop.Dispose();
        _wake.Dispose();
    }

    private void Run()
    {
        CausalLanguageModel? model = null;
        AdapterPool? pool = null;
        ContinuousBatcher? batcher = null;
        try
        {
            var device = new torch.Device(Device);
            model = CausalLanguageModel.Load(_base.Definition.Path, device, _base.DTypeOn(device));
            pool = new AdapterPool(model, _settings.MaxGpuAdapters, _settings.MaxLoraRank);
            batcher = new ContinuousBatcher(model, _settings.MaxBatchSize, ContextLength, pool);
            _metrics.ModelLoads.WithLabels(_base.Name).Inc();
            LogLoaded(_logger, _base.Name, Device, model.DType.ToString(), batcher.CacheBytes / (1 << 20), pool.Bytes / (1 << 20), pool.Slots,
                pool.MaxRank, pool.WholePoolDecode ? "the whole pool at once" : "each row's adapter gathered");
        }
        catch (Exception e)
        {
            LogLoadFailed(_logger, _base.Name, Device, e);
            lock (_gate)
            {
                _loadFailure = e;
                foreach (var p in _incoming) p.Run.Fail(e);
                _incoming.Clear();
            }
            model?.Dispose();
            return;
        }

        using (model)
        using (pool)
        using (batcher)
        {
            while (!_stop.IsCancellationRequested)
            {
                TakeIncoming();
                if (_queue.Count > 0 || batcher.Running > 0)
                {
                    // One admit-and-decode iteration is one turn on the device (shared with a training job, they alternate).
                    DeviceTurns.Turn turn;
                    try
                    {
                        turn = _turns.Take(_stop.Token);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                    using (turn)
                    {
                        var joining = Pick(batcher, pool);
                        if (!(joining.Count > 0 && batcher.Running > 0 && StepWith(batcher, joining)))
                        {
                            Admit(batcher, joining);
                            if (batcher.Running > 0) Decode(batcher);
                        }
                    }
                }
                _metrics.Running.WithLabels(_base.Name).Set(batcher.Running);
                _metrics.KvCacheUsage.WithLabels(_base.Name).Set(batcher.CachedTokens / (double)(batcher.MaxSequences * (long)batcher.ContextLength));
                if (batcher.Running == 0) _wake.Wait(_queue.Count > 0 ? 20 : 1000); // nothing to decode: sleep until work (or an adapter) arrives
            }
            foreach (var run in _queue.Select(p => p.Run).Distinct()) run.Fail(new OperationCanceledException("gpud is shutting down."));
        }
    }

    private void Decode(ContinuousBatcher batcher)
    {
        try
        {
            batcher.Step();
            _decodePasses.Inc();
        }
        catch (Exception e)
        {
            StepFailed(batcher, e, []);
        }
    }

    /// <summary>
    /// The joining requests and one decode step in one forward (<see cref="ContinuousBatcher.TryStep"/>): false when
    /// they cannot share it, and then they are admitted apart. The padded tokens allowed: on a GPU, where a forward's
    /// cost is mostly the host launching its kernels, up to <see cref="MixedStepTokens"/>; on the CPU, where every
    /// padded token is computed, twice the real ones at most.
    /// </summary>
    private bool StepWith(ContinuousBatcher batcher, List<(Pending Pending, SequenceGroup Group)> joining)
    {
        var groups = joining.Select(j => j.Group).ToList();
        long budget = Device.StartsWith("cuda", StringComparison.Ordinal)
            ? Math.Min(MixedStepTokens, _settings.MaxPrefillTokens)
            : 2L * (batcher.Running + groups.Sum(g => g.Prompt.Count));
        try
        {
            if (!batcher.TryStep(groups, budget)) return false;
            _mixedPasses.Inc();
            return true;
        }
        catch (Exception e)
        {
            StepFailed(batcher, e, joining.Select(j => j.Pending.Run));
            return true;
        }
    }

    /// <summary>A failed forward fails every request it touched, and the waiting ones (the device may be unusable).</summary>
    private void StepFailed(ContinuousBatcher batcher, Exception e, IEnumerable<GenerationRun> joining)
    {
        LogStepFailed(_logger, _base.Name, e);
        var groups = batcher.Clear();
        foreach (var run in _queue.Select(p => p.Run).Concat(joining).Concat(groups.Select(g => ((GenerationRun.PromptSink)g.Sink).Owner)).Distinct())
            run.Fail(e);
    }

    private void TakeIncoming()
    {
        lock (_gate)
        {
            // Interactive requests queue ahead of every Batch API one, in arrival order among themselves. The queue is
            // searched only when one arrives, not on every step of the serving loop.
            var firstBatch = _incoming.Count > 0 && _incoming.Exists(p => !p.Run.BatchPriority) ? _queue.FindIndex(p => p.Run.BatchPriority) : -1;
            foreach (var pending in _incoming)
            {
                if (pending.Run.BatchPriority || firstBatch < 0) _queue.Add(pending);
                else _queue.Insert(firstBatch++, pending);
            }
            _incoming.Clear();
            foreach (var directory in _forget)
            {
                if (_slotOf.Remove(directory)) _slotRecency.Remove(directory); // the slot is reused later; its rows (if any) finish with the old weights
            }
            _forget.Clear();
        }
    }

    /// <summary>
    /// Takes waiting requests in arrival order while rows are free, to be prefilled together in one forward pass of at
    /// most <see cref="InferenceSettings.MaxPrefillTokens"/> padded tokens (a longer prompt goes alone).
    /// </summary>
    private List<(Pending Pending, SequenceGroup Group)> Pick(ContinuousBatcher batcher, AdapterPool pool)
    {
        var batch = new List<(Pending Pending, SequenceGroup Group)>();
        var reserved = new HashSet<int>(); // slots the batch will use: not to be evicted before it runs
        var rows = batcher.FreeRows;
        var width = 0;
        for (var i = 0; i < _queue.Count;)
        {
            var pending = _queue[i];
            var input = pending.Run.Inputs[pending.Prompt];
            if (pending.Run.CancellationToken.IsCancellationRequested)
            {
                Dequeue(i);
                var sink = pending.Run.Sinks[pending.Prompt];
                for (var c = 0; c < input.Choices.Count; c++) sink.OnFinished(c, FinishReason.Cancelled);
                continue;
            }
            if (input.Choices.Count > rows) break; // first come, first served for rows
            var newWidth = Math.Max(width, input.Prompt.Count);
            if (batch.Count > 0 && (long)newWidth * (batch.Count + 1) > _settings.MaxPrefillTokens) break; // next turn
            int? slot;
            try
            {
                slot = SlotFor(pending, batcher, pool, reserved);
            }
            catch (Exception e)
            {
                Dequeue(i);
                if (pending.AdapterDirectory is not null) _hostCache.Forget(pending.AdapterDirectory);
                pending.Run.Fail(new InvalidOperationException($"The adapter could not be loaded: {e.Message}", e));
                continue;
            }
            if (slot is null)
            {
                i++; // its adapter is still loading (or every slot is busy): let the next request in
                continue;
            }
            Dequeue(i);
            reserved.Add(slot.Value);
            rows -= input.Choices.Count;
            width = newWidth;
            _metrics.PromptTokens.WithLabels(_base.Name).Inc(input.Prompt.Count);
            batch.Add((pending, new SequenceGroup(input.Prompt, input.Choices, pending.Run.Sinks[pending.Prompt], slot.Value, input.PromptLogprobs, pending.Run.CancellationToken)));
        }
        return batch;
    }

    /// <summary>Prefills the picked requests in a forward of their own.</summary>
    private void Admit(ContinuousBatcher batcher, List<(Pending Pending, SequenceGroup Group)> batch)
    {
        if (batch.Count == 0) return;
        try
        {
            batcher.Admit(batch.Select(b => b.Group).ToList());
            _prefillPasses.Inc();
        }
        catch (Exception e)
        {
            LogStepFailed(_logger, _base.Name, e);
            foreach (var run in batch.Select(b => b.Pending.Run).Distinct()) run.Fail(e);
        }
    }

    private void Dequeue(int index)
    {
        _queue.RemoveAt(index);
        lock (_gate)
        {
            _waiting--;
            _metrics.Waiting.WithLabels(_base.Name).Set(_waiting);
        }
    }

    /// <summary>The pool slot for the request's adapter: 0 for the base; null while it cannot be placed yet.</summary>
    private int? SlotFor(Pending pending, ContinuousBatcher batcher, AdapterPool pool, HashSet<int> reserved)
    {
        if (pending.AdapterDirectory is not { } directory) return 0;
        if (_slotOf.TryGetValue(directory, out var slot))
        {
            _slotRecency.Remove(directory);
            _slotRecency.AddFirst(directory);
            _metrics.AdapterHits.WithLabels("device").Inc();
            return slot;
        }
        var load = _hostCache.Get(directory, _base.Config, () => _wake.Release());
        if (!load.IsCompleted) return null;
        if (load.IsFaulted) throw load.Exception!.GetBaseException();

        bool InUse(int s) => batcher.UsesSlot(s) || reserved.Contains(s);
        var free = Enumerable.Range(1, pool.Slots).Where(s => !_slotOf.ContainsValue(s) && !InUse(s)).Cast<int?>().FirstOrDefault();
        if (free is null)
        {
            // Evict the least recently used adapter that no running row, and no request about to be prefilled, needs.
            var victim = _slotRecency.Reverse().FirstOrDefault(d => !InUse(_slotOf[d]));
            if (victim is null) return null;
            free = _slotOf[victim];
            _slotOf.Remove(victim);
            _slotRecency.Remove(victim);
        }
        if (!_hostCache.TryUse(directory, weights => pool.Load(free.Value, weights))) return null; // evicted from host meanwhile: reload
        _metrics.AdapterLoads.WithLabels("device").Inc();
        _slotOf[directory] = free.Value;
        _slotRecency.AddFirst(directory);
        return free;
    }

    // Padded tokens a mixed step (joining prompts with a decode step) may carry on a GPU. Both a forward's launch time
    // and its compute grow with the layers: at 1B a forward over this many tokens computes for less time than its
    // launches take (H200, 2026-12-04: 15 ms a batch-32 decode step, nearly all launches), and at 70B for about twice
    // as long, which is what the separate prefill forward it replaces would have cost, so it never loses much.
    private const int MixedStepTokens = 1024;

    private sealed record Pending(GenerationRun Run, int Prompt, string? AdapterDirectory);

    [LoggerMessage(Level = LogLevel.Information, Message = "Serving {Model} on {Device} ({DType}): KV cache {CacheMib} MiB, adapter pool {PoolMib} MiB ({Slots} slots up to rank {MaxRank}; decode steps apply {DecodeAdapters})")]
    private static partial void LogLoaded(ILogger logger, string model, string device, string dtype, long cacheMib, long poolMib, int slots, int maxRank, string decodeAdapters);

    [LoggerMessage(Level = LogLevel.Error, Message = "Could not load {Model} on {Device} for serving")]
    private static partial void LogLoadFailed(ILogger logger, string model, string device, Exception exception);

    [LoggerMessage(Level = LogLevel.Error, Message = "A serving step of {Model} failed; its running requests fail")]
    private static partial void LogStepFailed(ILogger logger, string model, Exception exception);
}
