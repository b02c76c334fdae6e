namespace Gpud.Tests.Infrastructure;

/// <summary>
/// gpud-tiny with a tool-aware reasoning chat template (Hermes-style <c>&lt;tool_call&gt;</c> blocks and an empty
/// <c>&lt;think&gt;</c> block before the last answer, as Qwen3's template writes them) and a
/// LoRA adapter fine-tuned, from OpenAI-format function-calling examples, to call <c>get_weather</c> for "Weather in
/// Oslo?", to call it twice (Oslo, then Rome) for "Weather in Oslo and Rome?", and to answer "Hi!" to "Say hi". Trains in
/// a few seconds on a CPU.
/// </summary>
public static class ToolCaller
{
    public static object[] Tools { get; } =
    [
        new { type = "function", function = new { name = "get_weather", description = "Weather in a city", parameters = new { type = "object", properties = new { city = new { type = "string" } } } } },
        new { type = "function", function = new { name = "get_time", parameters = new { type = "object", properties = new { } } } },
    ];

    // Tool names in a system turn; calls as Hermes-style blocks with the arguments written by tojson, as Qwen's does; the
    // last answer after an empty reasoning block, as Qwen3's template trains answers without reasoning.
    private const string Template =
        "{{ bos_token }}{% if tools %}<|start_header_id|>system<|end_header_id|>\n\nTools:{% for t in tools %} {{ t.function.name }}{% endfor %}<|eot_id|>{% endif %}" +
        "{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{% if m.role == 'assistant' and loop.last %}<think>\n\n</think>\n\n{% endif %}{% if m.tool_calls %}{% for c in m.tool_calls %}" +
        "<tool_call>{\"name\": \"{{ c.function.name }}\", \"arguments\": {{ c.function.arguments | tojson }}}</tool_call>{% endfor %}" +
        "{% else %}{{ m.content }}{% endif %}<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

    /// <summary>Writes the base model to <c>{directory}/base</c> and the adapter (PEFT format) to <c>{directory}/adapter</c>.</summary>
    public static (string Base, string Adapter) Prepare(string directory)
    {
        object Calls(params string[] cities) => new
        {
            role = "assistant",
            content = (string?)null,
            tool_calls = cities.Select((c, i) => new { id = $"call_{i}", type = "function", function = new { name = "get_weather", arguments = $$"""{"city":"{{c}}"}""" } }).ToArray(),
        };
        return TinyChatModel.Train(directory, Template, Enumerable.Range(0, 10).SelectMany(_ => new object[]
        {
            new { messages = new object[] { new { role = "user", content = "Weather in Oslo?" }, Calls("Oslo") }, tools = Tools },
            new { messages = new object[] { new { role = "user", content = "Weather in Oslo and Rome?" }, Calls("Oslo", "Rome") }, tools = Tools },
            new { messages = new object[] { new { role = "user", content = "Say hi" }, new { role = "assistant", content = "Hi!" } }, tools = Tools },
        }));
    }
}
