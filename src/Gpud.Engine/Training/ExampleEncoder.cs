using System.Text.Json;
using Gpud.Engine.Templates;
using Gpud.Engine.Tokenization;

namespace Gpud.Engine.Training;

/// <summary>
/// Turns OpenAI-format training examples into token ids with a loss mask. Chat examples are rendered with the model's
/// chat template; an assistant message trains (unless <c>weight: 0</c>) on exactly the tokens the template adds for it
/// after the generation prompt — its content and end-of-turn token. A conversation is one sequence when the template
/// renders it prefix-consistently (each turn renders the same whatever follows, as Llama 3 and ChatML do); otherwise
/// (e.g. Qwen3, which drops earlier turns' reasoning) each trained turn becomes its own sequence, rendered as the model
/// will see it at inference. An example's function tools (<c>tools</c>, or legacy <c>functions</c>) are rendered into
/// its prompt, as they are at inference, and its tool calls are trained as the template writes them.
/// Prompt/completion examples train on the completion and the end-of-sequence token. Preference examples (DPO) become
/// two sequences, the prompt answered with the preferred and with the non-preferred output, each masked to its answer.
/// </summary>
public sealed class ExampleEncoder(TextTokenizer tokenizer, ChatFormatter? chat, int maxLength)
{
    /// <summary>OpenAI's preference (DPO) example: <c>{"input": {"messages", "tools"?}, "preferred_output": [assistant message],
    /// "non_preferred_output": [assistant message]}</c>.</summary>
    public static bool IsPreference(JsonElement example) =>
        example.ValueKind == JsonValueKind.Object && example.TryGetProperty("input", out _) && !example.TryGetProperty("messages", out _);

    /// <summary>A supervised example (chat or prompt/completion) as the sequences it trains.</summary>
    public IReadOnlyList<TrainingExample> Encode(JsonElement example, int line)
    {
        if (IsPreference(example))
            throw new TrainingDataException("invalid_training_file",
                $"Line {line} is a preference example (input, preferred_output, non_preferred_output): train preference data with method type 'dpo'.");
        if (example.TryGetProperty("messages", out var messages))
            return EncodeChat(messages, ToolVariables(example), line);
        return [EncodePromptCompletion(example, line)];
    }

    /// <summary>A preference example as its two sequences, rendered as the model will see the prompt at inference.</summary>
    public PreferencePair EncodePreference(JsonElement example, int line)
    {
        if (!IsPreference(example))
            throw new TrainingDataException("invalid_training_file",
                $"Line {line} is not a preference example: method type 'dpo' trains on lines of {{\"input\": {{\"messages\": [...]}}, \"preferred_output\": [...], \"non_preferred_output\": [...]}}.");
        if (chat is null)
            throw new TrainingDataException("invalid_training_file",
                "The base model has no chat template, so preference examples (chat messages) cannot be rendered.");
        var input = example.GetProperty("input");
        var messages = input.GetProperty("messages").EnumerateArray().ToList();
        var variables = ToolVariables(input);
        var prompt = chat.Format(messages, addGenerationPrompt: true, variables).TokenIds;
        TrainingExample Answer(string key)
        {
            var output = example.GetProperty(key).EnumerateArray().Single();
            var full = chat.Format(messages.Append(output), addGenerationPrompt: false, variables).TokenIds;
            if (!StartsWith(full, prompt))
                throw new TrainingDataException("invalid_training_file",
                    $"Line {line}: the model's chat template renders the prompt differently once '{key}' follows it; gpud cannot tell which tokens are the answer.");
            return Build(full, prompt.Count, line, [(prompt.Count, full.Count)]);
        }
        return new PreferencePair(Answer("preferred_output"), Answer("non_preferred_output"));
    }

    private static Dictionary<string, JsonElement>? ToolVariables(JsonElement holder) =>
        ChatFormatter.Tools(holder) is { } tools ? new Dictionary<string, JsonElement> { ["tools"] = tools } : null;

    private TrainingExample EncodePromptCompletion(JsonElement example, int line)
    {
        var prompt = tokenizer.Encode(example.GetProperty("prompt").GetString()!, addSpecialTokens: true);
        var completion = tokenizer.Encode(example.GetProperty("completion").GetString()!).ToList();
        if (tokenizer.EosTokenId is { } eos) completion.Add(eos);
        return Build([.. prompt, .. completion], prompt.Count, line, [(prompt.Count, prompt.Count + completion.Count)]);
    }

    /// <param name="variables">The example's <c>tools</c> (as the template variable), rendered into every prompt as they
    /// will be at inference.</param>
    private List<TrainingExample> EncodeChat(JsonElement messages, Dictionary<string, JsonElement>? variables, int line)
    {
        if (chat is null)
            throw new TrainingDataException("invalid_training_file",
                "The base model has no chat template, so chat examples cannot be rendered; use prompt/completion examples.");
        var list = messages.EnumerateArray().ToList();
        var trained = list.Select((m, i) => (m, i))
            .Where(x => x.m.GetProperty("role").GetString() == "assistant" && !(x.m.TryGetProperty("weight", out var w) && w.GetInt32() == 0))
            .Select(x => x.i).ToList();
        if (trained.Count == 0)
            throw new TrainingDataException("invalid_training_file", $"Line {line}: every assistant message has weight 0: there is nothing to train on.");

        // Prefixes are rendered once each: a turn's "through" render is the next turn's "before" minus the prompt, and
        // the last one is the whole conversation.
        var renders = new Dictionary<(int, bool), IReadOnlyList<int>>();
        IReadOnlyList<int> Render(int count, bool addGenerationPrompt)
        {
            if (!renders.TryGetValue((count, addGenerationPrompt), out var ids))
                renders[(count, addGenerationPrompt)] = ids = chat.Format(list.Take(count), addGenerationPrompt, variables).TokenIds;
            return ids;
        }

        var full = Render(list.Count, addGenerationPrompt: false);
        var spans = new List<(int Start, int End)>();
        foreach (var i in trained)
        {
            var before = Render(i, addGenerationPrompt: true);
            var through = Render(i + 1, addGenerationPrompt: false);
            if (!StartsWith(through, before) || !StartsWith(full, through))
            {
                // Not prefix-consistent: one sequence per trained turn, each as it is generated at inference.
                return trained.Select(t =>
                {
                    var prompt = Render(t, addGenerationPrompt: true);
                    var turn = Render(t + 1, addGenerationPrompt: false);
                    if (!StartsWith(turn, prompt))
                        throw new TrainingDataException("invalid_training_file",
                            $"Line {line}: the model's chat template renders message {t} inconsistently; gpud cannot tell which tokens are the assistant's.");
                    return Build(turn, prompt.Count, line, [(prompt.Count, turn.Count)]);
                }).ToList();
            }
            spans.Add((before.Count, through.Count));
        }
        return [Build(full, spans[0].Start, line, spans)];
    }

    private TrainingExample Build(IReadOnlyList<int> ids, int firstTrained, int line, IReadOnlyList<(int Start, int End)> spans)
    {
        var mask = new bool[ids.Count];
        foreach (var (start, end) in spans)
        {
            for (var p = start; p < end; p++) mask[p] = true;
        }
        var truncated = ids.Count > maxLength;
        var length = Math.Min(ids.Count, maxLength);
        if (truncated && firstTrained >= length)
            throw new TrainingDataException("invalid_training_file",
                $"Line {line}: the prompt alone is longer than the {maxLength}-token context, so nothing of the answer would be trained.");
        return new TrainingExample(ids.Take(length).ToArray(), mask.Take(length).ToArray(), line, truncated);
    }

    private static bool StartsWith(IReadOnlyList<int> sequence, IReadOnlyList<int> prefix)
    {
        if (prefix.Count > sequence.Count) return false;
        for (var i = 0; i < prefix.Count; i++)
        {
            if (sequence[i] != prefix[i]) return false;
        }
        return true;
    }
}
