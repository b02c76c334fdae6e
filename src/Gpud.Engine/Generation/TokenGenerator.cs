using Gpud.Engine.Models;
using Gpud.Engine.Models.Layers;
using TorchSharp;
using static TorchSharp.torch;

namespace Gpud.Engine.Generation;

/// <summary>
/// Batched generation over a <see cref="CausalLanguageModel"/>: one prefill of the left-padded prompts, then one
/// decode step per token against a preallocated KV cache. Each sequence has its own sampling parameters and RNG, so a
/// request's output does not depend on what else is in the batch. Every step runs in its own dispose scope; the only
/// tensors that outlive a step are the cache and the per-sequence RNGs.
/// </summary>
public sealed class TokenGenerator(CausalLanguageModel model)
{
    /// <summary>Called after every decode step with each sequence's tokens so far; returning true stops that sequence.</summary>
    public delegate bool StopCondition(int sequence, IReadOnlyList<int> generated);

    /// <summary>Generates for every prompt. <paramref name="onToken"/> sees each new token as it is chosen (streaming).</summary>
    public IReadOnlyList<GenerationResult> Generate(
        IReadOnlyList<IReadOnlyList<int>> prompts,
        IReadOnlyList<SamplingParameters> parameters,
        StopCondition? stop = null,
        Action<int, int>? onToken = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompts);
        ArgumentNullException.ThrowIfNull(parameters);
        if (prompts.Count == 0) return [];
        if (prompts.Count != parameters.Count) throw new ArgumentException("One SamplingParameters per prompt is needed.", nameof(parameters));
        if (prompts.Any(p => p.Count == 0)) throw new ArgumentException("A prompt needs at least one token.", nameof(prompts));

        var batch = prompts.Count;
        var promptLength = prompts.Max(p => p.Count);
        var maxNew = parameters.Max(p => p.MaxTokens);
        var capacity = Math.Min(promptLength + maxNew, int.MaxValue);
        var generated = Enumerable.Range(0, batch).Select(_ => new List<int>()).ToArray();
        var logprobs = parameters.Select(p => p.TopLogprobs is null ? null : new List<TokenLogprob>()).ToArray();
        var finish = new FinishReason?[batch];
        var rngs = parameters.Select(p => p.Temperature > 0 ? new torch.Generator(0, CPU).manual_seed(p.Seed ?? Random.Shared.NextInt64()) : null).ToArray();
        var cache = model.NewCache(batch, capacity);
        try
        {
            using var noGrad = no_grad();
            using var keyValid = zeros([batch, capacity], ScalarType.Bool, model.Device);
            var nextPosition = new long[batch];
            Tensor? nextTokens = null;

            // Prefill: prompts right-aligned, so every sequence's next token lands in the same cache column.
            using (var scope = NewDisposeScope())
            {
                var ids = new long[batch, promptLength];
                var positions = new long[batch, promptLength];
                var valid = new bool[batch, promptLength];
                for (var b = 0; b < batch; b++)
                {
                    var offset = promptLength - prompts[b].Count;
                    for (var t = 0; t < prompts[b].Count; t++)
                    {
                        ids[b, offset + t] = prompts[b][t];
                        positions[b, offset + t] = t;
                        valid[b, offset + t] = true;
                    }
                    nextPosition[b] = prompts[b].Count;
                }
                var validTensor = tensor(valid, device: model.Device);
                keyValid.narrow(1, 0, promptLength).copy_(validTensor);
                var causal = ones([promptLength, promptLength], ScalarType.Bool, model.Device).tril();
                // Padding rows attend to nothing real; let them see themselves so softmax stays finite.
                var mask = (causal.unsqueeze(0) & validTensor.unsqueeze(1)) | eye(promptLength, dtype: ScalarType.Bool, device: model.Device).unsqueeze(0);
                var hidden = model.Hidden(tensor(ids, device: model.Device), tensor(positions, device: model.Device), mask.unsqueeze(1), cache);
                var logits = model.Logits(hidden[.., ^1..]).squeeze(1);
                nextTokens = Choose(logits, parameters, rngs, logprobs, generated, finish).MoveToOuterDisposeScope();
            }

            for (var step = 1; ; step++)
            {
                Record(nextTokens, parameters, generated, logprobs, finish, stop, onToken);
                if (finish.All(f => f is not null) || cancellationToken.IsCancellationRequested) break;
                using var scope = NewDisposeScope();
                var column = promptLength + step - 1;
                if (column >= capacity) break;
                keyValid.narrow(1, column, 1).fill_(true);
                var positions = tensor(nextPosition.Select((p, b) => p + generated[b].Count - 1).ToArray(), device: model.Device).unsqueeze(1);
                var mask = keyValid.narrow(1, 0, column + 1).view(batch, 1, 1, column + 1);
                var hidden = model.Hidden(nextTokens.unsqueeze(1), positions, mask, cache);
                var logits = model.Logits(hidden).squeeze(1);
                nextTokens.Dispose();
                nextTokens = Choose(logits, parameters, rngs, logprobs, generated, finish).MoveToOuterDisposeScope();
            }
            nextTokens.Dispose();
        }
        finally
        {
            foreach (var layer in cache) layer.Dispose();
            foreach (var rng in rngs) rng?.Dispose();
        }

        return Enumerable.Range(0, batch)
            .Select(b => new GenerationResult(generated[b], logprobs[b], finish[b] ?? FinishReason.Length, prompts[b].Count))
            .ToList();
    }

    /// <summary>
    /// Picks each unfinished sequence's next token from [batch, vocab] float32 logits. Greedy rows share one argmax and
    /// logprobs one gather and one top-k, each copied to the host once per step; only sampled rows go one by one
    /// (each has its own generator).
    /// </summary>
    private static Tensor Choose(Tensor logits, IReadOnlyList<SamplingParameters> parameters, torch.Generator?[] rngs,
        List<TokenLogprob>?[] logprobs, List<int>[] generated, FinishReason?[] finish)
    {
        var batch = parameters.Count;
        var chosen = logits.argmax(-1).to(CPU).data<long>().ToArray();
        for (var b = 0; b < batch; b++)
        {
            if (finish[b] is null && parameters[b].Temperature > 0) chosen[b] = Sample(logits[b], parameters[b], rngs[b]!);
        }

        if (logprobs.Any(l => l is not null))
        {
            var logSoftmax = logits.log_softmax(-1);
            var chosenTensor = tensor(chosen, device: logits.device);
            var chosenLogprobs = logSoftmax.gather(1, chosenTensor.unsqueeze(1)).squeeze(1).to(CPU).data<float>().ToArray();
            var k = parameters.Max(p => p.TopLogprobs ?? 0);
            float[] topValues = [];
            long[] topIndices = [];
            if (k > 0)
            {
                var (values, indices) = logSoftmax.topk(k);
                topValues = values.to(CPU).data<float>().ToArray();
                topIndices = indices.to(CPU).data<long>().ToArray();
            }
            for (var b = 0; b < batch; b++)
            {
                if (finish[b] is not null || logprobs[b] is not { } list) continue;
                var top = new List<(int, float)>();
                for (var j = 0; j < (parameters[b].TopLogprobs ?? 0); j++) top.Add(((int)topIndices[b * k + j], topValues[b * k + j]));
                list.Add(new TokenLogprob((int)chosen[b], chosenLogprobs[b], top));
            }
        }
        return tensor(chosen, device: logits.device);
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

    private static void Record(Tensor tokens, IReadOnlyList<SamplingParameters> parameters, List<int>[] generated,
        List<TokenLogprob>?[] logprobs, FinishReason?[] finish, StopCondition? stop, Action<int, int>? onToken)
    {
        long[] values;
        using (NewDisposeScope())
        {
            values = tokens.to(CPU).data<long>().ToArray(); // .to() may return a new handle: let the scope own it
        }
        for (var b = 0; b < values.Length; b++)
        {
            if (finish[b] is not null) continue;
            var token = (int)values[b];
            if (parameters[b].StopTokenIds?.Contains(token) == true)
            {
                finish[b] = FinishReason.Stop;
                logprobs[b]?.RemoveAt(logprobs[b]!.Count - 1); // the stop token is not part of the output
                continue;
            }
            generated[b].Add(token);
            onToken?.Invoke(b, token);
            if (stop?.Invoke(b, generated[b]) == true) finish[b] = FinishReason.Stop;
            else if (generated[b].Count >= parameters[b].MaxTokens) finish[b] = FinishReason.Length;
        }
    }
}
