using TorchSharp;
using static TorchSharp.torch;

namespace Gpud.Engine.Generation;

/// <summary>What the sampler needs to know about one row of a decode batch.</summary>
internal interface ISampledRow
{
    SamplingParameters Parameters { get; }

    /// <summary>The row's own generator (null when greedy), so its tokens never depend on the rest of the batch.</summary>
    torch.Generator? Rng { get; }

    /// <summary>Tokens generated so far (for presence and frequency penalties).</summary>
    IReadOnlyList<int> Generated { get; }

    /// <summary>The row's structured-output rule, if any: tokens it does not allow are never chosen.</summary>
    Constraints.ITokenConstraint? Constraint { get; }
}

/// <summary>
/// Chooses each row's next token from [rows, vocab] float32 logits. Logit bias and the presence/frequency penalties are
/// one sparse index_add over the whole batch; greedy rows share one argmax; sampled rows are drawn together on the
/// logits' device (temperature, top-k, top-p, then inverse-CDF sampling), each with one uniform number from its own
/// generator, so a row's random draws depend on its seed alone, never on its batch. The chosen tokens reach the host
/// in one copy per step, not a vocabulary-sized copy per sampled row. A row with a constraint (structured output) never
/// gets a token the constraint does not allow: their logits are −∞ before any choice. Reported logprobs are the model's own
/// distribution (before bias, penalties and temperature), as vLLM reports them.
/// </summary>
internal static class TokenSampler
{
    public static (long[] Tokens, TokenLogprob?[] Logprobs) Choose(Tensor logits, IReadOnlyList<ISampledRow> rows)
    {
        using var scope = NewDisposeScope();
        var count = rows.Count;
        var processed = Constrain(Adjust(logits, rows), logits, rows);
        var sampled = Enumerable.Range(0, count).Where(b => rows[b].Parameters.Temperature > 0).Select(b => (long)b).ToArray();
        Tensor choice;
        if (sampled.Length == count)
        {
            choice = Sample(processed, rows); // the usual serving batch: no argmax, no gather of the sampled rows
        }
        else
        {
            choice = processed.argmax(-1);
            if (sampled.Length > 0)
            {
                var index = tensor(sampled, device: logits.device);
                choice = choice.index_put_(Sample(processed.index_select(0, index), sampled.Select(b => rows[(int)b]).ToList()), index);
            }
        }
        var chosen = choice.to(CPU).data<long>().ToArray();

        var logprobs = new TokenLogprob?[count];
        if (rows.Any(r => r.Parameters.TopLogprobs is not null))
        {
            var logSoftmax = logits.log_softmax(-1);
            var chosenLogprobs = logSoftmax.gather(1, tensor(chosen, device: logits.device).unsqueeze(1)).squeeze(1).to(CPU).data<float>().ToArray();
            var k = rows.Max(r => r.Parameters.TopLogprobs ?? 0);
            var (topValues, topIndices) = k > 0 ? Top(logSoftmax, k) : ([], []);
            for (var b = 0; b < count; b++)
            {
                if (rows[b].Parameters.TopLogprobs is not { } wanted) continue;
                var top = new List<(int, float)>(wanted);
                for (var j = 0; j < wanted; j++) top.Add(((int)topIndices[b * k + j], topValues[b * k + j]));
                logprobs[b] = new TokenLogprob((int)chosen[b], chosenLogprobs[b], top);
            }
        }
        return (chosen, logprobs);
    }

    /// <summary>The k most likely tokens of each row of [rows, vocab] log-probabilities, flattened row-major.</summary>
    public static (float[] Values, long[] Indices) Top(Tensor logSoftmax, int k)
    {
        var (values, indices) = logSoftmax.topk(k);
        return (values.to(CPU).data<float>().ToArray(), indices.to(CPU).data<long>().ToArray());
    }

    /// <summary>
    /// Sets the logits of tokens a row's constraint does not allow to −∞. The rows' masks travel as bits (16 KB per row
    /// for a 128k vocabulary) and are unpacked on the logits' device, so the host writes no vocabulary-sized arrays.
    /// </summary>
    private static Tensor Constrain(Tensor adjusted, Tensor logits, IReadOnlyList<ISampledRow> rows)
    {
        if (!rows.Any(r => r.Constraint is not null)) return adjusted;
        var vocab = (int)logits.shape[1];
        var words = (vocab + 63) / 64;
        var packed = new long[rows.Count * words];
        var bits = System.Runtime.InteropServices.MemoryMarshal.Cast<long, ulong>(packed.AsSpan());
        for (var b = 0; b < rows.Count; b++)
        {
            var row = bits.Slice(b * words, words);
            if (rows[b].Constraint is not { } constraint)
            {
                row.Fill(ulong.MaxValue);
                continue;
            }
            constraint.Allowed(row);
            // A vocabulary that cannot spell a byte the grammar requires is the one way left to a dead end: the row
            // then ends at a stop token rather than drawing from an all −∞ row (which would stop the whole batch).
            if (row.IndexOfAnyExcept(0UL) < 0)
            {
                foreach (var stop in rows[b].Parameters.StopTokenIds ?? []) row[stop >> 6] |= 1UL << (stop & 63);
            }
        }
        var device = logits.device;
        // An explicit scalar, alive until the call returns: an implicit one (from a double) can be finalized while the
        // native call still reads it (seen as "Expected false to be true" from c10::Scalar with a 128k vocabulary).
        using var minusInfinity = double.NegativeInfinity.ToScalar();
        using var one = tensor(1L, device: device);
        using var shifts = arange(64, ScalarType.Int64, device);
        var mask = tensor(packed, device: device).view(rows.Count, words, 1).bitwise_right_shift(shifts).bitwise_and(one)
            .view(rows.Count, words * 64)[.., ..vocab].to(ScalarType.Bool);
        return adjusted.masked_fill(mask.logical_not(), minusInfinity);
    }

    private static Tensor Adjust(Tensor logits, IReadOnlyList<ISampledRow> rows)
    {
        if (!rows.Any(r => r.Parameters.AdjustsLogits)) return logits;
        var vocab = logits.shape[1];
        var index = new List<long>();
        var delta = new List<float>();
        for (var b = 0; b < rows.Count; b++)
        {
            var p = rows[b].Parameters;
            if (!p.AdjustsLogits) continue;
            if (p.PresencePenalty != 0 || p.FrequencyPenalty != 0)
            {
                foreach (var group in rows[b].Generated.GroupBy(t => t))
                {
                    index.Add(b * vocab + group.Key);
                    delta.Add((float)-(p.PresencePenalty + p.FrequencyPenalty * group.Count()));
                }
            }
            foreach (var (token, bias) in p.LogitBias ?? new Dictionary<int, float>())
            {
                index.Add(b * vocab + token);
                delta.Add(bias);
            }
        }
        var adjusted = logits.clone();
        if (index.Count > 0)
            adjusted.view(-1).index_add_(0, tensor(index.ToArray(), device: logits.device), tensor(delta.ToArray(), device: logits.device), 1);
        return adjusted;
    }

    /// <summary>One token per row of [rows, vocab] adjusted logits, each row with its own sampling parameters.</summary>
    private static Tensor Sample(Tensor logits, IReadOnlyList<ISampledRow> rows)
    {
        var device = logits.device;
        var vocab = logits.shape[1];
        var parameters = rows.Select(r => r.Parameters).ToList();
        var scaled = logits / tensor(parameters.Select(p => (float)p.Temperature).ToArray(), device: device).unsqueeze(1);

        var topK = parameters.Select(p => p.TopK > 0 && p.TopK < vocab ? p.TopK : 0).ToArray();
        if (topK.Any(k => k > 0))
        {
            // Keep each row's k largest (ties at the k-th included): mask below that row's k-th value.
            var (values, _) = scaled.topk(topK.Max());
            var kth = values.gather(1, tensor(topK.Select(k => (long)Math.Max(k - 1, 0)).ToArray(), device: device).unsqueeze(1));
            var limited = tensor(topK.Select(k => k > 0).ToArray(), device: device).unsqueeze(1);
            using var minusInfinity = double.NegativeInfinity.ToScalar();
            scaled = scaled.masked_fill(limited & (scaled < kth), minusInfinity);
        }

        var probs = scaled.softmax(-1);
        Tensor? order = null;
        if (parameters.Any(p => p.TopP < 1))
        {
            // Keep the smallest prefix (most likely first) whose mass reaches top_p; the first token always stays. Rows
            // without top_p keep every token. Only then is the vocabulary sorted: it costs more than the rest together.
            (probs, order) = probs.sort(-1, descending: true);
            var topP = tensor(parameters.Select(p => p.TopP < 1 ? (float)p.TopP : float.PositiveInfinity).ToArray(), device: device).unsqueeze(1);
            using var zero = 0.0.ToScalar();
            probs = probs.masked_fill((probs.cumsum(1) - probs) >= topP, zero);
        }

        // Inverse CDF: the first position whose cumulative mass exceeds u × the kept mass (u < 1, compared in float64, so
        // that position exists and has mass; masked tokens never move the cumulative sum, so they are never chosen).
        var cumulative = probs.cumsum(1);
        var u = rows.Select(r => rand(1, ScalarType.Float64, CPU, generator: r.Rng!).item<double>()).ToArray();
        var target = tensor(u, device: device).unsqueeze(1) * cumulative.narrow(1, vocab - 1, 1);
        var position = (cumulative <= target).sum(1, keepdim: true).clamp_max(vocab - 1);
        return (order is null ? position : order.gather(1, position)).squeeze(1);
    }
}
