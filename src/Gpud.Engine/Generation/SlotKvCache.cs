using Gpud.Engine.Models;
using Gpud.Engine.Models.Layers;
using static TorchSharp.torch;

namespace Gpud.Engine.Generation;

/// <summary>
/// The KV cache of a continuous batch: per layer, keys and values [rows, kv_heads, capacity, head_dim], one row per
/// running sequence, each row with its own length. A prefill writes its rows from position 0; a step writes every
/// row's new tokens from that row's own length (a scatter) and attends over the longest row with a length mask,
/// so sequences join and leave between steps without moving anyone else's cache.
/// </summary>
public sealed class SlotKvCache : IDisposable
{
    private readonly Tensor[] _keys;
    private readonly Tensor[] _values;
    private readonly long _kvHeads;
    private readonly long _headDim;

    public SlotKvCache(ModelConfig config, int rows, int capacity, ScalarType dtype, Device device)
    {
        ArgumentNullException.ThrowIfNull(config);
        Rows = rows;
        Capacity = capacity;
        _kvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        _keys = new Tensor[config.NumLayers];
        _values = new Tensor[config.NumLayers];
        for (var i = 0; i < config.NumLayers; i++)
        {
            _keys[i] = zeros([rows, _kvHeads, capacity, _headDim], dtype, device).DetachFromDisposeScope();
            _values[i] = zeros([rows, _kvHeads, capacity, _headDim], dtype, device).DetachFromDisposeScope();
        }
    }

    public int Rows { get; }

    /// <summary>Tokens one row holds: prompt plus generated.</summary>
    public int Capacity { get; }

    public long Bytes => _keys.Sum(k => k.numel() * k.element_size()) * 2;

    /// <summary>Per-layer caches that append to rows [row, row + count) from position 0 (dispose them after the forward).</summary>
    internal IReadOnlyList<LayerKvCache> ForPrefill(int row, int count) =>
        _keys.Zip(_values).Select(kv => new LayerKvCache(kv.First.narrow(0, row, count), kv.Second.narrow(0, row, count))).ToList();

    /// <summary>
    /// Per-layer caches for one step over rows [0, rows): row b's new keys go to positions[b, ..] (<paramref name="positions"/>,
    /// [rows, width] int64: one position per row when decoding; a joining prompt's from 0 in a mixed step), and attention
    /// sees positions [0, keyLength).
    /// </summary>
    internal IReadOnlyList<IKvCache> ForStep(int rows, Tensor positions, long keyLength)
    {
        var width = positions.size(1);
        var index = positions.view(rows, 1, width, 1).expand(rows, _kvHeads, width, _headDim).contiguous();
        return _keys.Zip(_values).Select(kv => (IKvCache)new DecodeCache(kv.First.narrow(0, 0, rows), kv.Second.narrow(0, 0, rows), index, keyLength)).ToList();
    }

    /// <summary>Copies the first <paramref name="length"/> positions of one row to another (n choices of one prompt; compaction).</summary>
    internal void CopyRow(int from, int to, long length)
    {
        if (length == 0 || from == to) return;
        using var scope = NewDisposeScope();
        foreach (var buffer in _keys.Concat(_values))
            buffer.narrow(0, to, 1).narrow(2, 0, length).copy_(buffer.narrow(0, from, 1).narrow(2, 0, length));
    }

    public void Dispose()
    {
        foreach (var t in _keys.Concat(_values)) t.Dispose();
    }

    private sealed class DecodeCache(Tensor keys, Tensor values, Tensor index, long keyLength) : IKvCache
    {
        public long Length => keyLength - 1;

        public (Tensor Keys, Tensor Values) Append(Tensor newKeys, Tensor newValues)
        {
            keys.scatter_(2, index, newKeys);
            values.scatter_(2, index, newValues);
            return (keys.narrow(2, 0, keyLength), values.narrow(2, 0, keyLength));
        }
    }
}
