using System.Text;
using System.Text.Json;

namespace Gpud.Engine.Training;

/// <summary>
/// A training file turned into what a trainer consumes, with what a job reports about it. <see cref="Sequences"/> holds
/// every sequence (for preference data, each pair's two); <see cref="Pairs"/> the preference pairs (empty for supervised data).
/// </summary>
public sealed record TrainingSet(IReadOnlyList<TrainingExample> Sequences, int Examples, int TruncatedExamples, long TrainedTokens, long TotalTokens)
{
    public IReadOnlyList<PreferencePair> Pairs { get; init; } = [];

    public TrainingObjective Objective { get; init; } = TrainingObjective.Supervised;

    /// <summary>What one training step takes <c>batch_size</c> of: sequences (supervised) or pairs (preference).</summary>
    public int Items => Objective == TrainingObjective.Preference ? Pairs.Count : Sequences.Count;
}

/// <summary>Reads an OpenAI JSONL training file (already checked line by line at upload) into training sequences.</summary>
public static class TrainingData
{
    /// <summary>OpenAI's minimum number of examples for a fine-tuning job.</summary>
    public const int MinExamples = 10;

    /// <exception cref="TrainingDataException">Too few examples, an example with nothing to train on, or an example in
    /// the other objective's format.</exception>
    public static TrainingSet Load(Stream jsonl, ExampleEncoder encoder, string param = "training_file", bool requireMinimum = true,
        TrainingObjective objective = TrainingObjective.Supervised)
    {
        ArgumentNullException.ThrowIfNull(encoder);
        var sequences = new List<TrainingExample>();
        var pairs = new List<PreferencePair>();
        var examples = 0;
        var truncated = 0;
        using var reader = new StreamReader(jsonl, new UTF8Encoding(false), detectEncodingFromByteOrderMarks: true);
        var line = 0;
        while (reader.ReadLine() is { } text)
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            using var document = JsonDocument.Parse(text);
            IReadOnlyList<TrainingExample> encoded;
            try
            {
                if (objective == TrainingObjective.Preference)
                {
                    var pair = encoder.EncodePreference(document.RootElement, line);
                    pairs.Add(pair);
                    encoded = [pair.Chosen, pair.Rejected];
                }
                else
                {
                    encoded = encoder.Encode(document.RootElement, line);
                }
            }
            catch (TrainingDataException e) when (e.Param != param)
            {
                throw new TrainingDataException(e.Code, e.Message, param);
            }
            examples++;
            if (encoded.Any(e => e.Truncated)) truncated++;
            sequences.AddRange(encoded);
        }
        if (requireMinimum && examples < MinExamples)
            throw new TrainingDataException("invalid_n_examples",
                $"Training file has {examples} example(s), but must have at least {MinExamples} examples", param);
        return new TrainingSet(sequences, examples, truncated, sequences.Sum(s => (long)s.TrainedTokens), sequences.Sum(s => (long)s.InputIds.Length))
        {
            Pairs = pairs,
            Objective = objective,
        };
    }
}
