using Gpud.Engine.Generation;
using Gpud.Engine.Models;
using Gpud.Tests.Infrastructure;
using TorchSharp;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class TokenGeneratorTests : IDisposable
{
    private readonly CausalLanguageModel _model = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/llama3-tiny"), CPU, ScalarType.Float32);

    private static readonly int[][] Prompts = [[5, 17, 99, 3, 42, 8, 200], [77], [10, 11, 12, 13]];

    public void Dispose() => _model.Dispose();

    [Fact]
    public void Batched_greedy_decoding_with_padding_equals_full_recomputation_of_each_prompt_alone()
    {
        var generator = new TokenGenerator(_model);
        var batched = generator.Generate(Prompts, Prompts.Select(_ => SamplingParameters.Greedy(12)).ToList());

        for (var i = 0; i < Prompts.Length; i++)
        {
            Assert.Equal(ReferenceGreedy(Prompts[i], 12), batched[i].TokenIds);
            Assert.Equal(FinishReason.Length, batched[i].FinishReason);
            Assert.Equal(Prompts[i].Length, batched[i].PromptTokens);
        }
    }

    [Fact]
    public void Sampling_with_a_seed_is_reproducible_and_independent_of_the_batch()
    {
        var generator = new TokenGenerator(_model);
        var sampled = new SamplingParameters(20, Temperature: 1.3, TopP: 0.9, TopK: 50, Seed: 1234);

        var alone = generator.Generate([Prompts[0]], [sampled])[0].TokenIds;
        var again = generator.Generate([Prompts[0]], [sampled])[0].TokenIds;
        var inBatch = generator.Generate([Prompts[2], Prompts[0]], [SamplingParameters.Greedy(5), sampled])[1].TokenIds;
        var otherSeed = generator.Generate([Prompts[0]], [sampled with { Seed = 4321 }])[0].TokenIds;

        Assert.Equal(alone, again);
        Assert.Equal(alone, inBatch);
        Assert.NotEqual(alone, otherSeed);
    }

    [Fact]
    public void A_stop_token_ends_the_sequence_and_is_not_returned()
    {
        var greedy = ReferenceGreedy(Prompts[0], 8);
        var stopAt = greedy[3];
        var expected = greedy.TakeWhile(t => t != stopAt).ToList();

        var result = new TokenGenerator(_model).Generate([Prompts[0]], [SamplingParameters.Greedy(8, [stopAt]) with { TopLogprobs = 2 }])[0];

        Assert.Equal(expected, result.TokenIds);
        Assert.Equal(FinishReason.Stop, result.FinishReason);
        Assert.Equal(expected.Count, result.Logprobs!.Count);
    }

    [Fact]
    public void Logprobs_are_the_models_log_softmax_with_sorted_alternatives()
    {
        var result = new TokenGenerator(_model).Generate([Prompts[0]], [SamplingParameters.Greedy(3) with { TopLogprobs = 5 }])[0];

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = tensor(Prompts[0].Select(i => (long)i).ToArray()).unsqueeze(0);
        var expected = _model.Logits(_model.Hidden(ids, arange(ids.shape[1], ScalarType.Int64).unsqueeze(0)))[0, -1].log_softmax(-1);
        var first = result.Logprobs![0];
        Assert.Equal(result.TokenIds[0], first.TokenId);
        Assert.Equal(expected[first.TokenId].item<float>(), first.Logprob, 4);
        Assert.Equal(5, first.Top.Count);
        Assert.Equal(first.TokenId, first.Top[0].TokenId); // greedy picks the most likely token
        Assert.True(first.Top.Zip(first.Top.Skip(1)).All(p => p.First.Logprob >= p.Second.Logprob));
    }

    [Fact]
    public void The_live_tensor_count_stays_flat_over_200_decode_steps()
    {
        var generator = new TokenGenerator(_model);
        var counts = new List<long>();
        generator.Generate([Prompts[0], Prompts[1]], [new SamplingParameters(200, Temperature: 0.8, Seed: 7, TopLogprobs: 3), SamplingParameters.Greedy(200)],
            onToken: (sequence, _) =>
            {
                if (sequence == 0) counts.Add(DisposeScopeManager.Statistics.TensorStatistics.ThreadTotalLiveCount);
            });

        Assert.Equal(200, counts.Count);
        Assert.Equal(counts[10], counts[^1]);
    }

    /// <summary>Greedy decoding by recomputing the whole sequence each step: no cache, no batch, no padding.</summary>
    private List<int> ReferenceGreedy(int[] prompt, int count)
    {
        var tokens = prompt.ToList();
        using var _ = no_grad();
        for (var i = 0; i < count; i++)
        {
            using var scope = NewDisposeScope();
            var ids = tensor(tokens.Select(t => (long)t).ToArray()).unsqueeze(0);
            var logits = _model.Logits(_model.Hidden(ids, arange(ids.shape[1], ScalarType.Int64).unsqueeze(0)));
            tokens.Add((int)logits[0, -1].argmax().item<long>());
        }
        return tokens.Skip(prompt.Length).ToList();
    }
}
