using System.Text.Json;
using Gpud.Engine.Generation;
using Gpud.Engine.Models;
using Gpud.Engine.Templates;
using Gpud.Engine.Tokenization;
using Gpud.Engine.Training;

namespace Gpud.Tests.Infrastructure;

/// <summary>
/// The 20-question capitals set: questions with fixed answers that gpud-tiny learns in a few hundred steps and cannot
/// answer before. Shared by the CPU tests, the CUDA lane and the API tests (as JSONL).
/// </summary>
public static class Capitals
{
    public static IReadOnlyList<string> Answers { get; } =
    [
        "Paris", "Rome", "Madrid", "Berlin", "Lisbon", "Vienna", "Prague", "Warsaw", "Athens", "Dublin",
        "Oslo", "Bern", "Riga", "Sofia", "Kyiv", "Tallinn", "Vilnius", "Zagreb", "Minsk", "Baku",
    ];

    public static string Question(int i) => $"Capital #{i}?";

    /// <summary>Example <paramref name="i"/> as a chat line of a training file.</summary>
    public static object Chat(int i) => new
    {
        messages = new object[] { new { role = "user", content = Question(i) }, new { role = "assistant", content = Answers[i % Answers.Count] } },
    };

    /// <summary>A wrong answer to question <paramref name="i"/>: another question's capital.</summary>
    public static string WrongAnswer(int i) => Answers[(i + 7) % Answers.Count];

    /// <summary>Example <paramref name="i"/> as a preference (DPO) line: the right capital preferred over a wrong one.</summary>
    public static object Preference(int i) => new
    {
        input = new { messages = new object[] { new { role = "user", content = Question(i) } } },
        preferred_output = new object[] { new { role = "assistant", content = Answers[i % Answers.Count] } },
        non_preferred_output = new object[] { new { role = "assistant", content = WrongAnswer(i % Answers.Count) } },
    };

    /// <summary>The set as preference pairs, encoded with the model directory's tokenizer and chat template.</summary>
    public static List<PreferencePair> EncodePreferences(string modelDirectory)
    {
        var tokenizer = TextTokenizer.Load(modelDirectory);
        var encoder = new ExampleEncoder(tokenizer, new ChatFormatter(tokenizer, ChatTemplate.Parse(tokenizer.ChatTemplate!)), 256);
        return Enumerable.Range(0, Answers.Count)
            .Select(i => encoder.EncodePreference(JsonDocument.Parse(JsonSerializer.Serialize(Preference(i))).RootElement, i + 1)).ToList();
    }

    /// <summary>The set encoded with the model directory's tokenizer and chat template.</summary>
    public static (TextTokenizer Tokenizer, ChatFormatter Chat, List<TrainingExample> Data) Encode(string modelDirectory)
    {
        var tokenizer = TextTokenizer.Load(modelDirectory);
        var chat = new ChatFormatter(tokenizer, ChatTemplate.Parse(tokenizer.ChatTemplate!));
        var encoder = new ExampleEncoder(tokenizer, chat, 256);
        var data = Enumerable.Range(0, Answers.Count)
            .SelectMany(i => encoder.Encode(JsonDocument.Parse(JsonSerializer.Serialize(Chat(i))).RootElement, i + 1)).ToList();
        return (tokenizer, chat, data);
    }

    /// <summary>The model's greedy answer to each question.</summary>
    public static List<string> Ask(CausalLanguageModel model, TextTokenizer tokenizer, ChatFormatter chat, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        var prompts = Answers.Select((_, i) => chat.Format(JsonDocument.Parse(JsonSerializer.Serialize(new[] { new { role = "user", content = Question(i) } })).RootElement, true).TokenIds).ToList();
        return new TokenGenerator(model).Generate(prompts, prompts.Select(_ => SamplingParameters.Greedy(12, model.Config.EosTokenIds)).ToList(), cancellationToken: cancellationToken)
            .Select(r => tokenizer.Decode(r.TokenIds)).ToList();
    }
}
