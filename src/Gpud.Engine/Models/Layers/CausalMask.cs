using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>
/// Which keys a query may attend to when SDPA's <c>is_causal</c> cannot say it: a chunk appended to a KV cache, or a
/// model with sliding-window attention (<see cref="ModelConfig.SlidingWindow"/>) over more positions than its window.
/// Key index k holds position k, as the caches and the serving batcher lay them out.
/// </summary>
public static class CausalMask
{
    /// <summary>Whether plain causal attention over <paramref name="keys"/> positions needs an explicit mask for the window.</summary>
    public static bool Windowed(int? window, long keys) => window is { } w && keys > w;

    /// <summary>
    /// Boolean [queries, keys]: queries at key indices <paramref name="offset"/> .. offset + queries − 1 see keys
    /// 0 .. their own index, and with a window only the last <paramref name="window"/> of those (themselves included).
    /// </summary>
    public static Tensor Causal(long queries, long keys, long offset, int? window, Device device)
    {
        using var scope = NewDisposeScope();
        var query = arange(offset, offset + queries, 1, ScalarType.Int64, device).unsqueeze(1);
        var key = arange(keys, ScalarType.Int64, device).unsqueeze(0);
        var allowed = key <= query;
        if (window is { } w) allowed = allowed.logical_and_(key > query - w);
        return allowed.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// <paramref name="mask"/> (boolean [batch, 1, seq, keys]) with the keys outside each query's window removed; the
    /// queries' positions are <paramref name="positionIds"/> [batch, seq].
    /// </summary>
    public static Tensor Window(Tensor mask, Tensor positionIds, int window)
    {
        ArgumentNullException.ThrowIfNull(mask);
        ArgumentNullException.ThrowIfNull(positionIds);
        using var scope = NewDisposeScope();
        var keys = mask.size(-1);
        var key = arange(keys, ScalarType.Int64, mask.device).view(1, 1, 1, keys);
        var oldest = (positionIds - window).view(positionIds.size(0), 1, positionIds.size(1), 1);
        return mask.logical_and(key > oldest).MoveToOuterDisposeScope();
    }
}
