using Gpud.Engine.Generation;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class ContinuousBatcherTests : IDisposable
{
    private static readonly string ModelDir = Repo.File("tests/fixtures/models/llama3-tiny");
    private static readonly int[][] Prompts = [[5, 17, 99, 3, 42, 8, 200], [77], [10, 11, 12, 13], [30, 31, 32, 33, 34]];

    private readonly TempDir _dir = new();
    private readonly CausalLanguageModel _model = CausalLanguageModel.Load(ModelDir, CPU, ScalarType.Float32);

    public void Dispose()
    {
        _model.Dispose();
        _dir.Dispose();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)] // decode steps over the whole pool, masked (CUDA's default)
    public void Rows_for_different_adapters_and_the_base_in_one_batch_each_match_that_adapter_attached_alone(bool wholePoolDecode)
    {
        string[] adapters =
        [
            Adapters.Write(_dir["a1"], ModelDir, 1),
            Adapters.Write(_dir["a2"], ModelDir, 2, new LoraSettings(8, 4, UseRslora: true), ["q_proj", "v_proj", "down_proj"]),
            Adapters.Write(_dir["a3"], ModelDir, 3, new LoraSettings(2, 4, UseDora: true)),
        ];
        using var pool = new AdapterPool(_model, slots: 3, maxRank: 8, wholePoolDecode);
        for (var i = 0; i < adapters.Length; i++)
        {
            using var weights = PeftAdapter.Read(adapters[i], _model.Config);
            pool.Load(i + 1, weights);
        }

        // Eight requests over slots 0..3, admitted at different steps so they also join a running batch.
        var requests = Enumerable.Range(0, 8).Select(i => (Prompt: Prompts[i % Prompts.Length], Slot: i % 4)).ToList();
        var sinks = requests.Select(_ => new RecordingSink()).ToList();
        using (var batcher = new ContinuousBatcher(_model, 8, 64, pool))
        {
            for (var i = 0; i < requests.Count; i++)
            {
                batcher.Admit(new SequenceGroup(requests[i].Prompt, [SamplingParameters.Greedy(10 + i)], sinks[i], requests[i].Slot));
                batcher.Step();
            }
            while (batcher.Running > 0) batcher.Step();
        }

        for (var i = 0; i < requests.Count; i++)
        {
            var (prompt, slot) = requests[i];
            Assert.Equal(Reference(slot == 0 ? null : adapters[slot - 1], prompt, 10 + i), sinks[i].Tokens[0]);
            Assert.Equal(FinishReason.Length, sinks[i].Finish[0]);
        }
        // The adapters change the output (else the comparison above proves nothing).
        var perSlot = Enumerable.Range(0, 4).Select(s => string.Join(",", sinks[s].Tokens[0].Take(10))).ToList();
        Assert.Equal(4, perSlot.Distinct().Count());
    }

    [Fact]
    public void Prompts_of_different_lengths_and_adapters_prefilled_together_each_match_that_prompt_alone()
    {
        string[] adapters =
        [
            Adapters.Write(_dir["a1"], ModelDir, 1),
            Adapters.Write(_dir["a2"], ModelDir, 2, new LoraSettings(8, 4, UseRslora: true), ["q_proj", "v_proj", "down_proj"]),
        ];
        using var pool = new AdapterPool(_model, slots: 2, maxRank: 8);
        for (var i = 0; i < adapters.Length; i++)
        {
            using var weights = PeftAdapter.Read(adapters[i], _model.Config);
            pool.Load(i + 1, weights);
        }
        var sampled = new SamplingParameters(9, Temperature: 1.0, Seed: 5);
        var groups = new[]
        {
            new SequenceGroup(Prompts[0], [SamplingParameters.Greedy(9)], new RecordingSink(), 1),
            new SequenceGroup(Prompts[1], [SamplingParameters.Greedy(9)], new RecordingSink(), 0),
            new SequenceGroup(Prompts[2], [sampled, sampled with { Seed = 6 }], new RecordingSink(), 0, PromptLogprobs: 1),
            new SequenceGroup(Prompts[3], [SamplingParameters.Greedy(9)], new RecordingSink(), 2),
        };
        using (var batcher = new ContinuousBatcher(_model, 6, 64, pool))
        {
            batcher.Admit(groups); // one forward over four right-padded prompts
            Assert.Equal(5, batcher.Running);
            while (batcher.Running > 0) batcher.Step();
        }

        Assert.Equal(Reference(adapters[0], Prompts[0], 9), Sink(0).Tokens[0]);
        Assert.Equal(Reference(null, Prompts[1], 9), Sink(1).Tokens[0]);
        Assert.Equal(Reference(adapters[1], Prompts[3], 9), Sink(3).Tokens[0]);
        var alone = new TokenGenerator(_model).Generate([Prompts[2], Prompts[2]], [sampled, sampled with { Seed = 6 }]);
        Assert.Equal(alone[0].TokenIds.ToList(), Sink(2).Tokens[0]);
        Assert.Equal(alone[1].TokenIds.ToList(), Sink(2).Tokens[1]);
        // The padded row's echo logprobs are its own prompt's.
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = tensor(Prompts[2].Select(t => (long)t).ToArray()).unsqueeze(0);
        var expected = _model.Logits(_model.Hidden(ids, arange(ids.shape[1], ScalarType.Int64).unsqueeze(0)))[0].log_softmax(-1);
        for (var i = 1; i < Prompts[2].Length; i++) Assert.Equal(expected[i - 1, Prompts[2][i]].item<float>(), Sink(2).Prompt![i]!.Logprob, 4);

        RecordingSink Sink(int g) => (RecordingSink)groups[g].Sink;
    }

    [Fact]
    public void Requests_that_join_a_running_batch_in_its_decode_step_each_match_that_request_alone()
    {
        string[] adapters = [Adapters.Write(_dir["a1"], ModelDir, 1), Adapters.Write(_dir["a2"], ModelDir, 2, new LoraSettings(2, 4, UseDora: true))];
        using var pool = new AdapterPool(_model, slots: 2, maxRank: 8);
        for (var i = 0; i < adapters.Length; i++)
        {
            using var weights = PeftAdapter.Read(adapters[i], _model.Config);
            pool.Load(i + 1, weights);
        }
        var sampled = new SamplingParameters(9, Temperature: 1.0, Seed: 5);
        // Eight requests over the base and both adapters (one sampled, on the base), joining two at a time while the earlier ones decode.
        var requests = Enumerable.Range(0, 8).Select(i => (Prompt: Prompts[i % Prompts.Length], Slot: i % 3, Parameters: i == 6 ? sampled : SamplingParameters.Greedy(6 + i))).ToList();
        var sinks = requests.Select(_ => new RecordingSink()).ToList();
        SequenceGroup Group(int i) => new(requests[i].Prompt, [requests[i].Parameters], sinks[i], requests[i].Slot);
        using (var batcher = new ContinuousBatcher(_model, 8, 64, pool))
        {
            batcher.Admit([Group(0), Group(1)]);
            for (var i = 2; i < requests.Count; i += 2)
            {
                Assert.True(batcher.TryStep([Group(i), Group(i + 1)], maxTokens: 1024));
                batcher.Step();
            }
            while (batcher.Running > 0) batcher.Step();
        }

        for (var i = 0; i < requests.Count; i++)
        {
            var (prompt, slot, parameters) = requests[i];
            var expected = parameters.Temperature > 0
                ? new TokenGenerator(_model).Generate([prompt], [parameters])[0].TokenIds.ToList()
                : Reference(slot == 0 ? null : adapters[slot - 1], prompt, parameters.MaxTokens);
            Assert.Equal(expected, sinks[i].Tokens[0]);
            Assert.Equal(FinishReason.Length, sinks[i].Finish[0]);
        }
    }

    [Fact]
    public void A_request_that_cannot_join_a_decode_step_is_refused_and_changes_nothing()
    {
        var sink = new RecordingSink();
        using var batcher = new ContinuousBatcher(_model, 4, 16);
        var waiting = new SequenceGroup(Prompts[0], [SamplingParameters.Greedy(4)], new RecordingSink());
        Assert.False(batcher.TryStep([waiting], maxTokens: 1024)); // nothing running: a plain prefill
        batcher.Admit(new SequenceGroup(Prompts[2], [SamplingParameters.Greedy(20)], sink));
        var twoChoices = new SequenceGroup(Prompts[0], [SamplingParameters.Greedy(4), SamplingParameters.Greedy(4)], new RecordingSink());
        Assert.False(batcher.TryStep([twoChoices], maxTokens: 1024));
        Assert.False(batcher.TryStep([waiting with { PromptLogprobs = 1 }], maxTokens: 1024));
        Assert.False(batcher.TryStep([waiting], maxTokens: 2 * Prompts[0].Length - 1)); // two rows padded to 7 tokens
        for (var i = 0; i < 6; i++) batcher.Step(); // the running row holds 4 + 6 positions: 7 more do not fit in 16
        Assert.False(batcher.TryStep([waiting], maxTokens: 1024));
        Assert.Equal(1, batcher.Running);
        Assert.Equal(7, sink.Tokens[0].Count); // one from the prefill, six steps: no refused call decoded anything
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Rows_that_all_use_one_low_rank_adapter_match_it_attached_alone(bool wholePoolDecode)
    {
        var adapter = Adapters.Write(_dir["only"], ModelDir, 4, new LoraSettings(2, 4, UseDora: true));
        using var pool = new AdapterPool(_model, slots: 2, maxRank: 8, wholePoolDecode); // rank 2 of 8: the padding must not matter
        using (var weights = PeftAdapter.Read(adapter, _model.Config)) pool.Load(2, weights);
        var sinks = Prompts.Select(_ => new RecordingSink()).ToList();
        using (var batcher = new ContinuousBatcher(_model, 4, 64, pool))
        {
            batcher.Admit(Prompts.Select((p, i) => new SequenceGroup(p, [SamplingParameters.Greedy(8)], sinks[i], 2)).ToList());
            while (batcher.Running > 0) batcher.Step();
        }

        for (var i = 0; i < Prompts.Length; i++) Assert.Equal(Reference(adapter, Prompts[i], 8), sinks[i].Tokens[0]);
        Assert.NotEqual(Reference(null, Prompts[0], 8), sinks[0].Tokens[0]);
    }

    [Theory]
    [InlineData("llama3-tiny", 1)]
    [InlineData("llama3-tiny", 3)]
    [InlineData("qwen2-tiny", 1)] // q/k/v biases: added after DoRA's row scale
    [InlineData("qwen2-tiny", 3)]
    [InlineData("qwen3-tiny", 1)] // per-head q/k norms
    public void Every_row_of_a_mixed_adapter_batch_gets_its_own_adapters_logits_both_ways_the_pool_computes(string fixture, int tokens)
    {
        // The two ways a pool computes a batch (every slot at once and masked, used for one token per row on CUDA; each
        // row's matrices gathered) give each row the logits of its adapter attached alone, the training way: DoRA,
        // rsLoRA, other ranks, partial targets and the base model included.
        var modelDir = Repo.File($"tests/fixtures/models/{fixture}");
        using var model = CausalLanguageModel.Load(modelDir, CPU, ScalarType.Float32);
        string[] adapters =
        [
            Adapters.Write(_dir["a1"], modelDir, 1),
            Adapters.Write(_dir["a2"], modelDir, 2, new LoraSettings(8, 4, UseRslora: true), ["q_proj", "v_proj", "down_proj"]),
            Adapters.Write(_dir["a3"], modelDir, 3, new LoraSettings(2, 4, UseDora: true)),
        ];
        int[] slots = [2, 0, 3, 1, 3];
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = tensor(new long[] { 17, 99, 5, 42, 200, 7, 64, 3, 120, 33, 8, 250, 90, 11, 71 }).view(5, 3)[.., ..tokens];
        var positions = arange(tokens, ScalarType.Int64).unsqueeze(0).expand(slots.Length, tokens);
        var logits = new[] { true, false }.Select(wholePool =>
        {
            using var pool = new AdapterPool(model, slots: 3, maxRank: 8, wholePool);
            for (var i = 0; i < adapters.Length; i++)
            {
                using var weights = PeftAdapter.Read(adapters[i], model.Config);
                pool.Load(i + 1, weights);
            }
            using var batch = pool.Select(slots);
            return model.Logits(model.Hidden(ids, positions, adapters: batch));
        }).ToList();
        var baseLogits = model.Logits(model.Hidden(ids, positions));

        for (var row = 0; row < slots.Length; row++)
        {
            using var alone = CausalLanguageModel.Load(modelDir, CPU, ScalarType.Float32);
            if (slots[row] > 0) PeftAdapter.Load(adapters[slots[row] - 1], alone);
            var expected = alone.Logits(alone.Hidden(ids[row..(row + 1)], positions[row..(row + 1)]));
            foreach (var computed in logits)
            {
                var difference = (computed[row..(row + 1)] - expected).abs().max().item<float>();
                Assert.True(difference < 1e-4, $"row {row} (slot {slots[row]}): max |logit difference| {difference:g3}");
            }
            // The adapters change the output, else the comparison proves nothing.
            if (slots[row] > 0) Assert.True((expected - baseLogits[row..(row + 1)]).abs().max().item<float>() > 1e-2, $"adapter {slots[row]} changes nothing");
        }
    }

    [Fact]
    public void Choices_of_one_prompt_share_its_prefill_but_sample_independently()
    {
        var sink = new RecordingSink();
        using var batcher = new ContinuousBatcher(_model, 4, 64);
        var choice = new SamplingParameters(12, Temperature: 1.0, Seed: 11);
        batcher.Admit(new SequenceGroup(Prompts[0], [choice, choice with { Seed = 12 }, choice], sink));
        while (batcher.Running > 0) batcher.Step();

        Assert.Equal(sink.Tokens[0], sink.Tokens[2]); // same seed, same tokens
        Assert.NotEqual(sink.Tokens[0], sink.Tokens[1]);
        var alone = new TokenGenerator(_model).Generate([Prompts[0]], [choice])[0].TokenIds;
        Assert.Equal(alone, sink.Tokens[0]);
    }

    [Fact]
    public void A_cancelled_group_leaves_at_the_next_step_and_frees_its_rows()
    {
        using var cancel = new CancellationTokenSource();
        var gone = new RecordingSink();
        var stays = new RecordingSink();
        using var batcher = new ContinuousBatcher(_model, 2, 64);
        batcher.Admit(new SequenceGroup(Prompts[0], [SamplingParameters.Greedy(40)], gone, CancellationToken: cancel.Token));
        batcher.Admit(new SequenceGroup(Prompts[2], [SamplingParameters.Greedy(20)], stays));
        batcher.Step();
        Assert.Equal(0, batcher.FreeRows);

        cancel.Cancel();
        batcher.Step();

        Assert.Equal(1, batcher.FreeRows);
        Assert.Equal(FinishReason.Cancelled, gone.Finish[0]);
        while (batcher.Running > 0) batcher.Step();
        Assert.Equal(Reference(null, Prompts[2], 20), stays.Tokens[0]); // moved to row 0 mid-flight, unharmed
    }

    [Fact]
    public void Logit_bias_and_penalties_change_the_choice_the_way_openai_documents()
    {
        var greedy = Reference(null, Prompts[0], 6);
        var banned = Run(SamplingParameters.Greedy(6) with { LogitBias = new Dictionary<int, float> { [greedy[0]] = -100 } });
        Assert.NotEqual(greedy[0], banned[0]);
        var forced = Run(SamplingParameters.Greedy(6) with { LogitBias = new Dictionary<int, float> { [123] = 100 } });
        Assert.All(forced, t => Assert.Equal(123, t));
        var repetitive = Run(SamplingParameters.Greedy(30) with { LogitBias = new Dictionary<int, float> { [123] = 5 } });
        var penalised = Run(SamplingParameters.Greedy(30) with { LogitBias = new Dictionary<int, float> { [123] = 5 }, FrequencyPenalty = 2 });
        Assert.True(penalised.Count(t => t == 123) < repetitive.Count(t => t == 123), $"{penalised.Count(t => t == 123)} vs {repetitive.Count(t => t == 123)}");
    }

    [Fact]
    public void Echo_logprobs_score_every_prompt_token_after_the_first()
    {
        var sink = new RecordingSink();
        using var batcher = new ContinuousBatcher(_model, 1, 64);
        batcher.Admit(new SequenceGroup(Prompts[0], [SamplingParameters.Greedy(1)], sink, PromptLogprobs: 2));

        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var ids = tensor(Prompts[0].Select(t => (long)t).ToArray()).unsqueeze(0);
        var expected = _model.Logits(_model.Hidden(ids, arange(ids.shape[1], ScalarType.Int64).unsqueeze(0)))[0].log_softmax(-1);
        Assert.Null(sink.Prompt![0]);
        for (var i = 1; i < Prompts[0].Length; i++)
        {
            Assert.Equal(Prompts[0][i], sink.Prompt[i]!.TokenId);
            Assert.Equal(expected[i - 1, Prompts[0][i]].item<float>(), sink.Prompt[i]!.Logprob, 4);
            Assert.Equal(2, sink.Prompt[i]!.Top.Count);
        }
    }

    private List<int> Run(SamplingParameters parameters)
    {
        var sink = new RecordingSink();
        using var batcher = new ContinuousBatcher(_model, 1, 64);
        batcher.Admit(new SequenceGroup(Prompts[0], [parameters], sink));
        while (batcher.Running > 0) batcher.Step();
        return sink.Tokens[0];
    }

    /// <summary>Greedy tokens with the adapter attached the training way (LoraAdapter on a fresh model), no batching.</summary>
    private static List<int> Reference(string? adapter, int[] prompt, int count)
    {
        using var model = CausalLanguageModel.Load(ModelDir, CPU, ScalarType.Float32);
        if (adapter is not null) PeftAdapter.Load(adapter, model);
        return new TokenGenerator(model).Generate([prompt], [SamplingParameters.Greedy(count)])[0].TokenIds.ToList();
    }

    private sealed class RecordingSink : ISequenceSink
    {
        public Dictionary<int, List<int>> Tokens { get; } = [];
        public Dictionary<int, FinishReason> Finish { get; } = [];
        public IReadOnlyList<TokenLogprob?>? Prompt { get; private set; }

        public void OnPromptLogprobs(IReadOnlyList<TokenLogprob?> logprobs) => Prompt = logprobs;

        public bool OnToken(int choice, int tokenId, TokenLogprob? logprob)
        {
            if (!Tokens.TryGetValue(choice, out var list)) Tokens[choice] = list = [];
            list.Add(tokenId);
            return true;
        }

        public void OnFinished(int choice, FinishReason reason) => Finish[choice] = reason;
    }
}
