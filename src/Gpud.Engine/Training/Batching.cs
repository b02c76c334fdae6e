using Gpud.Engine.Models.Layers;
using static TorchSharp.torch;

namespace Gpud.Engine.Training;

/// <summary>A row of a batch: one or more whole sequences (packed) back to back.</summary>
public sealed record BatchRow(IReadOnlyList<TrainingExample> Sequences)
{
    public int Length => Sequences.Sum(s => s.InputIds.Length);
}

/// <summary>
/// Tensors for one forward pass. <see cref="Labels"/> holds the next token where it is trained and -100 elsewhere
/// (prompt, padding, and the last token of each packed sequence, which must not predict its neighbour).
/// </summary>
public sealed class TrainingBatch(Tensor inputIds, Tensor positionIds, PackedSegments? segments, Tensor labels, Tensor trainedSequence, int trainedTokens, int tokens)
    : IDisposable
{
    public Tensor InputIds { get; } = inputIds;
    public Tensor PositionIds { get; } = positionIds;

    /// <summary>
    /// The sequences of packed rows, so that attention stays inside each; null when plain causal attention over whole
    /// rows is exact (no row holds more than one sequence).
    /// </summary>
    public PackedSegments? Segments { get; } = segments;

    public Tensor Labels { get; } = labels;

    /// <summary>
    /// For each trained position, in row-major order (the order of <c>Labels != -100</c>'s nonzero), the index of its
    /// sequence among the batch's sequences taken row by row: what per-sequence sums (preference losses) group by.
    /// </summary>
    public Tensor TrainedSequence { get; } = trainedSequence;

    public int TrainedTokens { get; } = trainedTokens;

    public int Tokens { get; } = tokens;

    public void Dispose()
    {
        InputIds.Dispose();
        PositionIds.Dispose();
        Segments?.Dispose();
        Labels.Dispose();
        TrainedSequence.Dispose();
    }
}

/// <summary>
/// Groups sequences into rows: packed (several sequences per row up to the context length, positions restarting and
/// attention kept inside each sequence, so every sequence computes exactly what it would alone) or padded (one
/// sequence per row, rows of similar length together).
/// </summary>
public static class Batching
{
    public const long IgnoreIndex = -100;

    /// <summary>Greedy packing in the given order (the caller shuffles): a sequence goes to the current row if it fits.</summary>
    public static List<BatchRow> Pack(IEnumerable<TrainingExample> sequences, int maxLength)
    {
        var rows = new List<BatchRow>();
        var current = new List<TrainingExample>();
        var length = 0;
        foreach (var sequence in sequences)
        {
            if (current.Count > 0 && length + sequence.InputIds.Length > maxLength)
            {
                rows.Add(new BatchRow(current));
                current = [];
                length = 0;
            }
            current.Add(sequence);
            length += sequence.InputIds.Length;
        }
        if (current.Count > 0) rows.Add(new BatchRow(current));
        return rows;
    }

    /// <summary>One sequence per row.</summary>
    public static List<BatchRow> Single(IEnumerable<TrainingExample> sequences) => sequences.Select(s => new BatchRow([s])).ToList();

    /// <summary>Right-pads <paramref name="rows"/> to the longest and builds the tensors on <paramref name="device"/>.</summary>
    public static TrainingBatch Collate(IReadOnlyList<BatchRow> rows, Device device)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var width = rows.Max(r => r.Length);
        var ids = new long[rows.Count, width];
        var positions = new long[rows.Count, width];
        var labels = new long[rows.Count, width];
        var trained = 0;
        var trainedSequence = new List<long>();
        var index = 0;
        for (var r = 0; r < rows.Count; r++)
        {
            var offset = 0;
            for (var s = 0; s < rows[r].Sequences.Count; s++)
            {
                var sequence = rows[r].Sequences[s];
                var n = sequence.InputIds.Length;
                for (var t = 0; t < n; t++)
                {
                    ids[r, offset + t] = sequence.InputIds[t];
                    positions[r, offset + t] = t;
                    var trainsNext = t + 1 < n && sequence.LossMask[t + 1];
                    labels[r, offset + t] = trainsNext ? sequence.InputIds[t + 1] : IgnoreIndex;
                    if (!trainsNext) continue;
                    trained++;
                    trainedSequence.Add(index);
                }
                offset += n;
                index++;
            }
            for (var t = offset; t < width; t++) labels[r, t] = IgnoreIndex;
        }

        using var scope = NewDisposeScope();
        // Without packed rows the causal triangle alone is exact: right padding comes after every real token, so no real
        // token can see it, and padded positions carry no labels.
        var segments = rows.Any(r => r.Sequences.Count > 1)
            ? PackedSegments.Create(rows.Select(r => (IReadOnlyList<int>)r.Sequences.Select(s => s.InputIds.Length).ToList()).ToList(), width, device)
            : null;
        return new TrainingBatch(
            tensor(ids, device: device).MoveToOuterDisposeScope(),
            tensor(positions, device: device).MoveToOuterDisposeScope(),
            segments,
            tensor(labels, device: device).MoveToOuterDisposeScope(),
            tensor(trainedSequence.ToArray(), device: device).MoveToOuterDisposeScope(),
            trained,
            rows.Sum(r => r.Length));
    }
}
