using static TorchSharp.torch;

namespace Gpud.Engine.Models.Layers;

/// <summary>
/// Attention for rows that hold several sequences back to back (packed training batches), computed sequence by
/// sequence instead of under a dense block-diagonal mask. The sequences are gathered into right-padded
/// [count, length] groups of similar length, each group takes SDPA's plain causal path (flash on CUDA; right padding
/// is invisible under the causal triangle), and the outputs are put back in row order. A dense [batch, 1, seq, seq]
/// mask rules the flash kernel out and costs seq² per row whatever the sequences' lengths; here a row of eight
/// 256-token sequences costs eight 256² triangles.
/// </summary>
public sealed class PackedSegments : IDisposable
{
    private readonly List<Group> _groups;
    private readonly Tensor _destination;
    private readonly long _batch;
    private readonly long _width;

    /// <param name="Gather">[count × length] indices into the flattened [batch × width] positions; padding slots repeat
    /// the sequence's last token (what they compute is discarded).</param>
    /// <param name="Real">Indices of the real (unpadded) slots within the gathered grid, in sequence order.</param>
    private sealed record Group(Tensor Gather, Tensor Real, long Count, long Length);

    private PackedSegments(List<Group> groups, Tensor destination, long batch, long width)
    {
        _groups = groups;
        _destination = destination;
        _batch = batch;
        _width = width;
    }

    /// <param name="rows">For each row, the lengths of the sequences it holds, in order from position 0; the rest of
    /// the row, up to <paramref name="width"/>, is padding (its attention output is zero).</param>
    public static PackedSegments Create(IReadOnlyList<IReadOnlyList<int>> rows, long width, Device device)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var segments = new List<(long Start, int Length)>();
        for (var r = 0; r < rows.Count; r++)
        {
            long offset = 0;
            foreach (var length in rows[r])
            {
                if (length <= 0) throw new ArgumentException("Sequence lengths must be positive.", nameof(rows));
                segments.Add((r * width + offset, length));
                offset += length;
            }
            if (offset > width) throw new ArgumentException($"Row {r} holds {offset} tokens, more than the width {width}.", nameof(rows));
        }

        // Groups by power-of-two length class, so padding at most doubles a sequence inside its group while the number
        // of kernel calls stays at the number of length classes present (≤ log2 of the width).
        var groups = new List<Group>();
        var destination = new List<long>();
        foreach (var byClass in segments.GroupBy(s => 64 - long.LeadingZeroCount((long)s.Length - 1)).OrderByDescending(g => g.Key))
        {
            var members = byClass.ToList();
            var length = members.Max(s => s.Length);
            var gather = new long[members.Count * length];
            var real = new List<long>();
            for (var i = 0; i < members.Count; i++)
            {
                var (start, n) = members[i];
                for (var t = 0; t < length; t++)
                {
                    gather[i * length + t] = start + Math.Min(t, n - 1);
                    if (t < n)
                    {
                        real.Add(i * length + t);
                        destination.Add(start + t);
                    }
                }
            }
            groups.Add(new Group(
                tensor(gather, device: device).DetachFromDisposeScope(),
                tensor(real.ToArray(), device: device).DetachFromDisposeScope(),
                members.Count, length));
        }
        return new PackedSegments(groups, tensor(destination.ToArray(), device: device).DetachFromDisposeScope(), rows.Count, width);
    }

    /// <summary>Causal attention within each sequence.</summary>
    /// <param name="q">[batch, heads, width, headDim] (rotary applied).</param>
    /// <param name="k">[batch, kvHeads, width, headDim].</param>
    /// <param name="v">[batch, kvHeads, width, headDim].</param>
    /// <param name="repeatKv">Expands key/value heads to the query heads.</param>
    /// <param name="window">The model's sliding window (<see cref="ModelConfig.SlidingWindow"/>), or null.</param>
    /// <returns>[batch, width, heads × headDim], heads merged as the output projection expects.</returns>
    public Tensor Attend(Tensor q, Tensor k, Tensor v, Func<Tensor, Tensor> repeatKv, int? window = null)
    {
        ArgumentNullException.ThrowIfNull(q);
        ArgumentNullException.ThrowIfNull(k);
        ArgumentNullException.ThrowIfNull(v);
        ArgumentNullException.ThrowIfNull(repeatKv);
        using var scope = NewDisposeScope();
        var (heads, kvHeads, headDim) = (q.shape[1], k.shape[1], q.shape[3]);
        var tokens = _batch * _width;
        var flatQ = q.transpose(1, 2).reshape(tokens, heads, headDim);
        var flatK = k.transpose(1, 2).reshape(tokens, kvHeads, headDim);
        var flatV = v.transpose(1, 2).reshape(tokens, kvHeads, headDim);
        var outputs = new List<Tensor>(_groups.Count);
        foreach (var group in _groups)
        {
            Tensor Gathered(Tensor flat, long h) => flat.index_select(0, group.Gather).view(group.Count, group.Length, h, headDim).transpose(1, 2);
            // Sequences longer than a sliding window need it spelled out; the others keep the plain causal path.
            var mask = CausalMask.Windowed(window, group.Length) ? CausalMask.Causal(group.Length, group.Length, 0, window, q.device) : null;
            var attended = nn.functional.scaled_dot_product_attention(
                Gathered(flatQ, heads), repeatKv(Gathered(flatK, kvHeads)), repeatKv(Gathered(flatV, kvHeads)), mask, 0.0, mask is null);
            outputs.Add(attended.transpose(1, 2).reshape(group.Count * group.Length, heads * headDim).index_select(0, group.Real));
        }
        var real = outputs.Count == 1 ? outputs[0] : cat(outputs, 0);
        return zeros([tokens, heads * headDim], real.dtype, real.device)
            .index_copy(0, _destination, real)
            .view(_batch, _width, heads * headDim)
            .MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        foreach (var group in _groups)
        {
            group.Gather.Dispose();
            group.Real.Dispose();
        }
        _destination.Dispose();
    }
}
