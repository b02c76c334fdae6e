using Gpud.Engine.Demo;
using Gpud.Engine.Generation;
using Gpud.Engine.Models;
using Gpud.Engine.Tokenization;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class TextStreamTests
{
    private static readonly TextTokenizer Tokenizer = TextTokenizer.Load(Repo.File("tests/fixtures/models/gpud-tiny"));

    [Theory]
    [InlineData("Hello world. Bye", new[] { "world" }, "Hello ")]
    [InlineData("Hello world. Bye", new[] { "Bye", ". " }, "Hello world")]
    [InlineData("no stop here 😀", new[] { "STOP" }, "no stop here 😀")]
    [InlineData("emoji 😀 stop", new[] { "😀" }, "emoji ")]
    [InlineData("ends with the sto", new[] { "stop" }, "ends with the sto")]
    public void Streamed_pieces_add_up_to_the_text_before_the_first_stop(string generated, string[] stops, string expected)
    {
        var stream = new TextStream(Tokenizer, stops);
        var pieces = new List<string>();
        foreach (var id in Tokenizer.Encode(generated))
        {
            pieces.Add(stream.Add(id));
            if (stream.Stopped) break;
        }
        pieces.Add(stream.Finish());

        Assert.Equal(expected, stream.Text);
        Assert.Equal(expected, string.Concat(pieces));
        Assert.Equal(generated != expected, stream.Stopped);
        Assert.DoesNotContain(pieces, p => p.Length > 0 && char.IsHighSurrogate(p[^1])); // never half a character
        Assert.All(stops, s => Assert.DoesNotContain(s, string.Concat(pieces)));
    }

    [Fact]
    public void A_stop_string_ends_generation_through_the_stop_condition()
    {
        using var model = CausalLanguageModel.Load(Repo.File("tests/fixtures/models/gpud-tiny"), CPU, ScalarType.Float32);
        var prompt = Tokenizer.Encode("Hi", addSpecialTokens: true);
        var generator = new TokenGenerator(model);
        var free = generator.Generate([prompt], [new SamplingParameters(40, Temperature: 1, Seed: 3)])[0];
        var freeText = Tokenizer.Decode(free.TokenIds);
        var stop = freeText.Substring(10, 2); // something the model will produce
        var expected = freeText[..freeText.IndexOf(stop, StringComparison.Ordinal)];

        var stream = new TextStream(Tokenizer, [stop]);
        var result = generator.Generate([prompt], [new SamplingParameters(40, Temperature: 1, Seed: 3)],
            stop: (_, generated) =>
            {
                stream.Add(generated[^1]);
                return stream.Stopped;
            })[0];
        stream.Finish();

        Assert.Equal(FinishReason.Stop, result.FinishReason);
        Assert.Equal(expected, stream.Text);
        Assert.True(result.TokenIds.Count < free.TokenIds.Count);
    }
}
