using Gpud.Engine.Lora;
using Gpud.Engine.Models;

namespace Gpud.Services.Inference;

/// <summary>
/// The host-memory tier of the adapter cache: adapters read from disk (off the serving thread), most recently used
/// kept, least recently used disposed beyond the capacity. Reading is one task per adapter however many requests
/// ask, and the serving loop only ever looks at finished tasks, so an adapter loading never blocks anyone else.
/// </summary>
public sealed class AdapterHostCache(int capacity, InferenceMetrics metrics) : IDisposable
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, LinkedListNode<Entry>> _entries = new(StringComparer.Ordinal);
    private readonly LinkedList<Entry> _recency = new(); // most recent first

    /// <summary>The adapter's load task (started now if needed); <paramref name="onLoaded"/> runs when a new load ends.</summary>
    public Task<LoraWeights> Get(string directory, ModelConfig config, Action onLoaded)
    {
        lock (_gate)
        {
            if (_entries.TryGetValue(directory, out var node))
            {
                _recency.Remove(node);
                _recency.AddFirst(node);
                if (node.Value.Load.IsCompletedSuccessfully) metrics.AdapterHits.WithLabels("host").Inc();
                return node.Value.Load;
            }
            var load = Task.Run(() =>
            {
                var weights = PeftAdapter.Read(directory, config);
                metrics.AdapterLoads.WithLabels("host").Inc();
                return weights;
            });
            load.ContinueWith(_ => onLoaded(), TaskScheduler.Default);
            _entries[directory] = _recency.AddFirst(new Entry(directory, load));
            Trim();
            return load;
        }
    }

    /// <summary>Runs <paramref name="use"/> on a loaded adapter while it cannot be evicted (copying it to a device).</summary>
    public bool TryUse(string directory, Action<LoraWeights> use)
    {
        ArgumentNullException.ThrowIfNull(use);
        lock (_gate)
        {
            if (!_entries.TryGetValue(directory, out var node) || !node.Value.Load.IsCompletedSuccessfully) return false;
            use(node.Value.Load.Result);
            return true;
        }
    }

    /// <summary>Drops an adapter (deleted model, or a failed load that should be retried next time).</summary>
    public void Forget(string directory)
    {
        lock (_gate)
        {
            if (_entries.Remove(directory, out var node))
            {
                _recency.Remove(node);
                Release(node.Value);
            }
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (var entry in _recency) Release(entry);
            _recency.Clear();
            _entries.Clear();
        }
    }

    private void Trim()
    {
        // Only finished loads are evicted; a load in progress is someone's pending request.
        for (var node = _recency.Last; node is not null && _entries.Count > capacity;)
        {
            var previous = node.Previous;
            if (node.Value.Load.IsCompleted)
            {
                _entries.Remove(node.Value.Directory);
                _recency.Remove(node);
                Release(node.Value);
            }
            node = previous;
        }
    }

    private static void Release(Entry entry)
    {
        if (entry.Load.IsCompletedSuccessfully) entry.Load.Result.Dispose();
        else entry.Load.ContinueWith(t => { if (t.IsCompletedSuccessfully) t.Result.Dispose(); }, TaskScheduler.Default);
    }

    private sealed record Entry(string Directory, Task<LoraWeights> Load);
}
