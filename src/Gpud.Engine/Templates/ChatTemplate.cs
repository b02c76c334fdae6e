using System.Text.Json;
using Gpud.Engine.Templates.Jinja;

namespace Gpud.Engine.Templates;

/// <summary>
/// A model's Jinja <c>chat_template</c> (tokenizer_config.json), rendered as transformers' <c>apply_chat_template</c>
/// renders it: Jinja with <c>trim_blocks</c> and <c>lstrip_blocks</c>, <c>bos_token</c>, <c>eos_token</c>,
/// <c>add_generation_prompt</c> and <c>messages</c> in the context. gpud runs the template itself rather than
/// re-implementing each family, so fine-tuned models with custom templates work too; <see cref="Family"/> names the
/// known layouts for humans.
/// </summary>
public sealed class ChatTemplate
{
    private readonly IReadOnlyList<Node> _template;

    private ChatTemplate(string source, IReadOnlyList<Node> template)
    {
        Source = source;
        _template = template;
        Reasons = source.Contains(ReasoningStream.Open, StringComparison.Ordinal) && source.Contains(ReasoningStream.Close, StringComparison.Ordinal);
        Family = source.Contains("<|start_header_id|>", StringComparison.Ordinal) ? "llama3"
            : source.Contains("<|im_start|>", StringComparison.Ordinal) ? "chatml"
            : source.Contains("[INST]", StringComparison.Ordinal) ? source.Contains("<<SYS>>", StringComparison.Ordinal) ? "llama2" : "mistral"
            : "custom";
    }

    public string Source { get; }

    /// <summary>
    /// The template writes reasoning blocks (<c>&lt;think&gt;…&lt;/think&gt;</c>, as Qwen3's and DeepSeek-R1's do), so
    /// an answer's leading block is reasoning, not content (<see cref="ReasoningStream"/>).
    /// </summary>
    public bool Reasons { get; }

    /// <summary><c>llama3</c>, <c>chatml</c> (Qwen), <c>mistral</c>, <c>llama2</c> or <c>custom</c>.</summary>
    public string Family { get; }

    /// <exception cref="TemplateSyntaxException">The template uses syntax gpud's Jinja does not support.</exception>
    public static ChatTemplate Parse(string source)
    {
        ArgumentNullException.ThrowIfNull(source);
        return new ChatTemplate(source, JinjaParser.Parse(source));
    }

    /// <summary>Renders <paramref name="messages"/> (a JSON array of OpenAI-style messages).</summary>
    /// <param name="variables">Extra template variables such as <c>tools</c> or <c>enable_thinking</c>.</param>
    /// <exception cref="TemplateRenderException">The template rejected the messages (raise_exception) or failed.</exception>
    public string Render(JsonElement messages, bool addGenerationPrompt, string? bosToken, string? eosToken,
        IReadOnlyDictionary<string, JsonElement>? variables = null) =>
        Render(JinjaRuntime.FromJson(messages), addGenerationPrompt, bosToken, eosToken,
            variables?.ToDictionary(v => v.Key, v => JinjaRuntime.FromJson(v.Value), StringComparer.Ordinal));

    internal string Render(object? messages, bool addGenerationPrompt, string? bosToken, string? eosToken, IReadOnlyDictionary<string, object?>? variables)
    {
        var context = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["messages"] = messages,
            ["add_generation_prompt"] = addGenerationPrompt,
            ["bos_token"] = bosToken ?? "",
            ["eos_token"] = eosToken ?? "",
        };
        foreach (var (key, value) in variables ?? new Dictionary<string, object?>()) context[key] = value;
        return JinjaRuntime.Render(_template, context);
    }
}
