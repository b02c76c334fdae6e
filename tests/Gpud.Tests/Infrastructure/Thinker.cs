namespace Gpud.Tests.Infrastructure;

/// <summary>
/// gpud-tiny with a reasoning chat template (an empty <c>&lt;think&gt;</c> block before an answer that has none, as
/// Qwen3's writes) and a LoRA adapter fine-tuned to think ("add") before answering "4" to "Think: 2+2?", and to answer
/// "Hi!" to "Say hi" without thinking. Trains in a few seconds on a CPU.
/// </summary>
public static class Thinker
{
    private const string Template =
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n" +
        "{% if m.role == 'assistant' and not (m.content and '<think>' in m.content) %}<think>\n\n</think>\n\n{% endif %}{{ m.content }}<|eot_id|>{% endfor %}" +
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

    /// <summary>Writes the base model to <c>{directory}/base</c> and the adapter (PEFT format) to <c>{directory}/adapter</c>.</summary>
    public static (string Base, string Adapter) Prepare(string directory) =>
        TinyChatModel.Train(directory, Template, Enumerable.Range(0, 10).SelectMany(_ => new object[]
        {
            new { messages = new object[] { new { role = "user", content = "Think: 2+2?" }, new { role = "assistant", content = "<think>\nadd\n</think>\n\n4" } } },
            new { messages = new object[] { new { role = "user", content = "Say hi" }, new { role = "assistant", content = "Hi!" } } },
        }));
}
