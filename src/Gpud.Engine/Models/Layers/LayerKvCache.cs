using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>Where a layer's attention keeps keys and values between forward calls.</summary>
public interface IKvCache
{
    /// <summary>Positions already cached before this call (0 for a prefill).</summary>
    long Length { get; }

    /// <summary>Stores [batch, kv_heads, new, head_dim] keys and values; returns everything attention should see.</summary>
    (Tensor Keys, Tensor Values) Append(Tensor keys, Tensor values);
}

/// <summary>
/// One layer's preallocated key/value buffers, [batch, kv_heads, capacity, head_dim]. Appending writes the new
/// positions in place and returns views over everything written so far: no reallocation per step.
/// </summary>
public sealed class LayerKvCache : IKvCache, IDisposable
{
    private readonly Tensor _keys;
    private readonly Tensor _values;

    public LayerKvCache(long batch, long kvHeads, long capacity, long headDim, ScalarType dtype, Device device)
    {
        _keys = zeros([batch, kvHeads, capacity, headDim], dtype, device);
        _values = zeros([batch, kvHeads, capacity, headDim], dtype, device);
        Capacity = capacity;
    }

    /// <summary>A cache over existing buffers (views into a larger one); disposing it releases only the views.</summary>
    public LayerKvCache(Tensor keys, Tensor values)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(values);
        _keys = keys;
        _values = values;
        Capacity = keys.shape[2];
    }

    public long Capacity { get; }

    /// <summary>Positions written so far.</summary>
    public long Length { get; private set; }

    public (Tensor Keys, Tensor Values) Append(Tensor keys, Tensor values)
    {
        var added = keys.size(2);
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
