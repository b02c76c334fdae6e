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
}

/// <summary>
/// Chooses each row's next token from [rows, vocab] float32 logits. Logit bias and the presence/frequency penalties are
/// one sparse index_add over the whole batch; greedy rows share one argmax; sampled rows go one by one on the CPU with
/// their own generator. Reported logprobs are the model's own distribution (before bias, penalties and temperature),
/// as vLLM reports them; each copy to the host happens once per step.
/// </summary>
internal static class TokenSampler
{
    public static (long[] Tokens, TokenLogprob?[] Logprobs) Choose(Tensor logits, IReadOnlyList<ISampledRow> rows)
    {
        using var scope = NewDisposeScope();
        var count = rows.Count;
        var processed = Adjust(logits, rows);
        var chosen = processed.argmax(-1).to(CPU).data<long>().ToArray();
        for (var b = 0; b < count; b++)
        {
            if (rows[b].Parameters.Temperature > 0) chosen[b] = Sample(processed[b], rows[b].Parameters, rows[b].Rng!);
        }

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

    private static long Sample(Tensor row, SamplingParameters p, torch.Generator rng)
    {
        var scaled = row / p.Temperature;
        if (p.TopK > 0 && p.TopK < scaled.shape[0])
        {
            var (values, _) = scaled.topk(p.TopK);
            scaled = scaled.masked_fill(scaled < values[^1], double.NegativeInfinity);
        }
        var probs = scaled.softmax(-1);
        if (p.TopP < 1)
        {
            var (sorted, order) = probs.sort(descending: true);
            var cumulative = sorted.cumsum(0);
            // Keep the smallest prefix whose mass reaches top_p (the first token always stays).
            var drop = (cumulative - sorted) >= p.TopP;
            sorted = sorted.masked_fill(drop, 0);
            probs = zeros_like(probs).scatter(0, order, sorted);
        }
        // Sampling on the CPU with the sequence's own generator keeps results reproducible whatever the device.
        return probs.to(CPU).multinomial(1, false, rng).item<long>();
    }
}
