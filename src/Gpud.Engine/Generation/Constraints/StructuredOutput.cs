using System.Text.Json;

namespace Gpud.Engine.Generation.Constraints;

/// <summary>
/// The structured outputs of one vocabulary (one per tokenizer): JSON mode and JSON schemas as token constraints. The
/// tokens each grammar state allows are remembered across requests, and so are the last
/// <see cref="RememberedSchemas"/> compiled schemas (by their text): a service extracting with one schema all day
/// walks the vocabulary for each of its states once.
/// </summary>
public sealed class StructuredOutput(IReadOnlyList<byte[]?> tokenBytes)
{
    public const int RememberedSchemas = 16;

    private readonly TokenMasks<JsonObjectGrammar> _jsonObject = new(capacity: 1024);
    private readonly Lock _lock = new();
    private readonly LinkedList<(string Text, JsonSchema Schema, TokenMasks<JsonSchemaGrammar> Masks)> _schemas = new(); // most recent first

    public TokenTrie Trie { get; } = new(tokenBytes);

    /// <summary>One JSON object (OpenAI's <c>response_format: json_object</c>).</summary>
    public Func<ITokenConstraint> JsonObject() => () => new GrammarConstraint<JsonObjectGrammar>(Trie, JsonObjectGrammar.Start, _jsonObject);

    /// <summary>One instance of <paramref name="schema"/> (OpenAI's <c>response_format: json_schema</c>).</summary>
    /// <exception cref="JsonSchemaException">The schema cannot be compiled.</exception>
    public Func<ITokenConstraint> JsonSchema(JsonElement schema) => Remembered(schema.GetRawText(), () => Constraints.JsonSchema.Compile(schema));

    /// <summary>A forced function call (<see cref="Constraints.JsonSchema.ToolCalls"/>).</summary>
    /// <exception cref="JsonSchemaException">A tool's parameters cannot be compiled.</exception>
    public Func<ITokenConstraint> ToolCalls(IReadOnlyList<(string Name, JsonElement? Parameters)> tools, bool parallel) =>
        Remembered($"tools:{parallel}:" + string.Join('\0', tools.Select(t => t.Name + "\u0001" + t.Parameters?.GetRawText())),
            () => Constraints.JsonSchema.ToolCalls(tools, parallel));

    private Func<ITokenConstraint> Remembered(string text, Func<JsonSchema> compile)
    {
        (string Text, JsonSchema Schema, TokenMasks<JsonSchemaGrammar> Masks) entry;
        lock (_lock)
        {
            entry = _schemas.FirstOrDefault(e => e.Text == text);
        }
        if (entry.Schema is null)
        {
            entry = (text, compile(), new TokenMasks<JsonSchemaGrammar>(capacity: 256));
        }
        lock (_lock)
        {
            var node = _schemas.First;
            while (node is not null && node.Value.Text != text) node = node.Next;
            if (node is not null)
            {
                entry = node.Value; // a concurrent request compiled it first: share its masks
                _schemas.Remove(node);
            }
            _schemas.AddFirst(entry);
            if (_schemas.Count > RememberedSchemas) _schemas.RemoveLast();
        }
        var (start, masks) = (entry.Schema.Start, entry.Masks);
        return () => new GrammarConstraint<JsonSchemaGrammar>(Trie, start, masks);
    }
}
