using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>
/// One layer's preallocated key/value buffers, [batch, kv_heads, capacity, head_dim]. Appending writes the new
/// positions in place and returns views over everything written so far: no reallocation per step.
/// </summary>
public sealed class LayerKvCache : IDisposable
{
    private readonly Tensor _keys;
    private readonly Tensor _values;

    public LayerKvCache(long batch, long kvHeads, long capacity, long headDim, ScalarType dtype, Device device)
    {
        _keys = zeros([batch, kvHeads, capacity, headDim], dtype, device);
        _values = zeros([batch, kvHeads, capacity, headDim], dtype, device);
        Capacity = capacity;
    }

    public long Capacity { get; }

    /// <summary>Positions written so far.</summary>
    public long Length { get; private set; }

    public (Tensor Keys, Tensor Values) Append(Tensor keys, Tensor values)
    {
        var added = keys.shape[2];
        if (Length + added > Capacity)
            throw new InvalidOperationException($"KV cache overflow: {Length} + {added} > capacity {Capacity}.");
        using (var k = _keys.narrow(2, Length, added)) k.copy_(keys);
        using (var v = _values.narrow(2, Length, added)) v.copy_(values);
        Length += added;
        return (_keys.narrow(2, 0, Length), _values.narrow(2, 0, Length));
    }

    public void Reset() => Length = 0;

    public void Dispose()
    {
        _keys.Dispose();
        _values.Dispose();
    }
}
