using Gpud.Engine.Generation;
using Gpud.Engine.Models;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

/// <summary>Sampled tokens follow the distribution that temperature, top_p (OpenAI's) and top_k (vLLM's) define.</summary>
public sealed class SamplingTests : IDisposable
{
    private static readonly int[] Prompt = [5, 17, 99, 3, 42, 8, 200];
    private static readonly SamplingParameters[] WithTopP =
    [
        new(1, Temperature: 0.3, TopK: 4),
        new(1, Temperature: 0.2, TopP: 0.5),
        new(1, Temperature: 0.5, TopP: 0.3, TopK: 5),
    ];

    // No row with top_p: the vocabulary is never sorted.
    private static readonly SamplingParameters[] WithoutTopP =
    [
        new(1, Temperature: 0.3, TopK: 4),
        new(1, Temperature: 0.15),
        new(1, Temperature: 0.5, TopK: 2),
    ];

    private readonly CausalLanguageModel _model = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/llama3-tiny"), CPU, ScalarType.Float32);

    public void Dispose() => _model.Dispose();

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void First_tokens_sampled_in_mixed_batches_follow_each_rows_tempered_and_truncated_distribution(bool topP)
    {
        var settings = topP ? WithTopP : WithoutTopP;
        // 2,048 draws per setting: every admission prefills the prompt once and samples 30 rows, 10 per setting, each
        // row with its own seed.
        const int Rounds = 205;
        var counts = settings.Select(_ => new Dictionary<int, int>()).ToArray();
        using (var batcher = new ContinuousBatcher(_model, 30, 16))
        {
            for (var round = 0; round < Rounds; round++)
            {
                var choices = Enumerable.Range(0, 30).Select(c => settings[c % 3] with { Seed = round * 30 + c }).ToList();
                var sink = new FirstTokens();
                batcher.Admit(new SequenceGroup(Prompt, choices, sink));
                foreach (var (choice, token) in sink.Tokens)
                {
                    var setting = counts[choice % 3];
                    setting[token] = setting.GetValueOrDefault(token) + 1;
                }
            }
        }

        var logits = Logits();
        for (var s = 0; s < settings.Length; s++)
        {
            var expected = Expected(logits, settings[s]);
            var draws = counts[s].Values.Sum();
            Assert.Equal(Rounds * 10, draws);
            Assert.All(counts[s].Keys, token => Assert.True(expected.ContainsKey(token), $"setting {s}: token {token} is outside the kept set {string.Join(",", expected.Keys)}"));
            foreach (var (token, p) in expected)
            {
                var frequency = counts[s].GetValueOrDefault(token) / (double)draws;
                Assert.True(Math.Abs(frequency - p) < 0.05, $"setting {s}: token {token} drawn {frequency:F3} of the time, expected {p:F3}");
            }
        }
    }

    private float[] Logits()
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var ids = tensor(Prompt.Select(t => (long)t).ToArray()).unsqueeze(0);
        return _model.Logits(_model.Hidden(ids, arange(ids.shape[1], ScalarType.Int64).unsqueeze(0)))[0, -1].data<float>().ToArray();
    }

    /// <summary>softmax(logits / T), the k most likely (renormalised), then the smallest prefix whose mass reaches top_p
    /// (renormalised): the order of transformers' TopK and TopP warpers.</summary>
    private static Dictionary<int, double> Expected(float[] logits, SamplingParameters p)
    {
        var max = logits.Max();
        var weights = logits.Select((l, t) => (Token: t, Weight: Math.Exp((l - max) / p.Temperature))).ToList();
        var total = weights.Sum(w => w.Weight);
        var ranked = weights.Select(w => (w.Token, P: w.Weight / total)).OrderByDescending(w => w.P).ToList();
        if (p.TopK > 0)
        {
            ranked = ranked.Take(p.TopK).ToList();
            var kMass = ranked.Sum(w => w.P);
            ranked = ranked.Select(w => (w.Token, w.P / kMass)).ToList(); // top_p then sees the top-k distribution
        }
        var kept = new List<(int Token, double P)>();
        double before = 0;
        foreach (var w in ranked)
        {
            if (before >= p.TopP) break;
            kept.Add(w);
            before += w.P;
        }
        var mass = kept.Sum(w => w.P);
        return kept.ToDictionary(w => w.Token, w => w.P / mass);
    }

    private sealed class FirstTokens : ISequenceSink
    {
        public List<(int Choice, int Token)> Tokens { get; } = [];

        public void OnPromptLogprobs(IReadOnlyList<TokenLogprob?> logprobs)
        {
        }

        public bool OnToken(int choice, int tokenId, TokenLogprob? logprob)
        {
            Tokens.Add((choice, tokenId));
            return true;
        }

        public void OnFinished(int choice, FinishReason reason)
        {
        }
    }
}
