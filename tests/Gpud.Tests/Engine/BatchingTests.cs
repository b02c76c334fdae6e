using System.Text.Json;
using Gpud.Engine.Models;
using Gpud.Engine.Templates;
using Gpud.Engine.Tokenization;
using Gpud.Engine.Training;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class BatchingTests : IDisposable
{
    private readonly TextTokenizer _tokenizer = TextTokenizer.Load(Repo.File("tests/fixtures/models/gpud-tiny"));
    private readonly CausalLanguageModel _model = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/gpud-tiny"), CPU, ScalarType.Float32);

    public void Dispose() => _model.Dispose();

    private List<TrainingExample> Examples()
    {
        var encoder = new ExampleEncoder(_tokenizer, new ChatFormatter(_tokenizer, ChatTemplate.Parse(_tokenizer.ChatTemplate!)), 2048);
        string[] lines =
        [
            """{"messages":[{"role":"user","content":"What is the capital of France?"},{"role":"assistant","content":"Paris"}]}""",
            """{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"2+2?"},{"role":"assistant","content":"4","weight":0},{"role":"user","content":"3+3?"},{"role":"assistant","content":"6"}]}""",
            """{"prompt":"Translate 'cat':","completion":" chat"}""",
        ];
        return lines.SelectMany((l, i) => encoder.Encode(JsonDocument.Parse(l).RootElement, i + 1)).ToList();
    }

    [Fact]
    public void Packing_gives_every_example_the_loss_it_has_alone()
    {
        var examples = Examples();
        using var _ = no_grad();
        using var scope = NewDisposeScope();

        var alone = examples.Select(e =>
        {
            using var batch = Batching.Collate(Batching.Single([e]), CPU);
            var result = TrainingLoss.Compute(_model, batch);
            return (Loss: result.LossSum, result.Correct, result.Tokens);
        }).ToList();

        using var packed = Batching.Collate(Batching.Pack(examples, 4096), CPU);
        var packedResult = TrainingLoss.Compute(_model, packed);
        using var padded = Batching.Collate(Batching.Single(examples), CPU);
        var paddedResult = TrainingLoss.Compute(_model, padded);

        Assert.Equal(1, packed.InputIds.shape[0]);
        Assert.Equal(alone.Sum(a => a.Tokens), packedResult.Tokens);
        Assert.Equal(alone.Sum(a => a.Loss), packedResult.LossSum, 3);
        Assert.Equal(alone.Sum(a => a.Correct), packedResult.Correct);
        Assert.Equal(alone.Sum(a => a.Loss), paddedResult.LossSum, 3);
        Assert.Null(padded.Segments); // one sequence per row: plain causal attention over whole rows is exact
        Assert.Equal(examples.Sum(e => e.InputIds.Length), packed.Tokens);
    }

    [Fact]
    public void Labels_are_the_next_trained_token_and_never_cross_a_sequence_boundary()
    {
        var examples = Examples();
        using var batch = Batching.Collate(Batching.Pack(examples, 4096), CPU);
        var labels = batch.Labels[0].data<long>().ToArray();
        var ids = batch.InputIds[0].data<long>().ToArray();

        // The first example trains "Paris<|eot_id|>": 6 labels, each the id that follows.
        var first = examples[0];
        var trainedPositions = Enumerable.Range(0, first.InputIds.Length).Where(t => labels[t] != Batching.IgnoreIndex).ToList();
        Assert.Equal(6, trainedPositions.Count);
        Assert.Equal("Paris<|eot_id|>", _tokenizer.Decode(trainedPositions.Select(t => (int)labels[t]), skipSpecialTokens: false));
        Assert.All(trainedPositions, t => Assert.Equal(ids[t + 1], labels[t]));
        Assert.Equal(Batching.IgnoreIndex, labels[first.InputIds.Length - 1]); // last token of a sequence predicts nothing
        Assert.Equal(0L, batch.PositionIds[0, first.InputIds.Length].item<long>()); // positions restart
        Assert.NotNull(batch.Segments); // attention stays inside each sequence (its loss is the one it has alone: above)
        Assert.Equal(examples.Sum(e => e.TrainedTokens), batch.TrainedTokens);
    }

    [Fact]
    public void A_sequence_trained_from_its_first_token_counts_only_the_tokens_that_are_predicted()
    {
        var everything = new TrainingExample([5, 6, 7, 8], [true, true, true, true], 1, false);
        using var batch = Batching.Collate(Batching.Single([everything]), CPU);

        Assert.Equal(3, batch.TrainedTokens); // 6, 7 and 8 are predicted; 5 has nothing before it
        Assert.Equal(batch.TrainedTokens, everything.TrainedTokens); // the step loss is divided by what was scored
    }
}
