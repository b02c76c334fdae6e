using System.Text.Json;
using System.Text.RegularExpressions;
using Gpud.Engine.Generation.Constraints;
using Gpud.Services.Errors;

namespace Gpud.Services.Inference;

/// <summary>
/// OpenAI's <c>response_format</c>: <c>text</c> (the default), <c>json_object</c> (the answer is one JSON object) or
/// <c>json_schema</c> (structured outputs: the answer is an instance of the schema). Both JSON formats are enforced
/// token by token (<see cref="StructuredOutput"/>), whatever <c>strict</c> says: a guarantee costs nothing more here.
/// </summary>
/// <param name="Schema">json_schema's schema; null for json_object (and for a json_schema without one: any object).</param>
public sealed partial record OutputFormat(bool Json, string? Name = null, JsonElement? Schema = null)
{
    private static readonly HashSet<string> SchemaFields = ["name", "description", "schema", "strict"];

    public static OutputFormat Text { get; } = new(Json: false);

    public static OutputFormat Parse(JsonElement? format)
    {
        if (format is not { } value) return Text;
        if (value.ValueKind != JsonValueKind.Object || !value.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            throw GpudException.Invalid("'response_format' must be an object with a string 'type'.", "response_format", "invalid_type");
        switch (type.GetString())
        {
            case "text":
                return Text;
            case "json_object":
                return new OutputFormat(Json: true);
            case "json_schema":
                break;
            case var other:
                throw GpudException.Invalid($"Invalid value for 'response_format.type': '{other}' is not one of 'text', 'json_object', 'json_schema'.", "response_format.type");
        }
        if (!value.TryGetProperty("json_schema", out var spec) || spec.ValueKind == JsonValueKind.Null)
            throw GpudException.Invalid("Missing required parameter: 'response_format.json_schema'.", "response_format.json_schema", "missing_required_parameter");
        if (spec.ValueKind != JsonValueKind.Object)
            throw GpudException.Invalid("Invalid value for 'response_format.json_schema': it must be an object.", "response_format.json_schema", "invalid_type");
        foreach (var field in spec.EnumerateObject().Where(f => !SchemaFields.Contains(f.Name)))
            throw GpudException.Invalid($"Unrecognized request argument supplied: response_format.json_schema.{field.Name}", $"response_format.json_schema.{field.Name}", "unknown_parameter");
        if (!spec.TryGetProperty("name", out var name) || name.ValueKind == JsonValueKind.Null)
            throw GpudException.Invalid("Missing required parameter: 'response_format.json_schema.name'.", "response_format.json_schema.name", "missing_required_parameter");
        if (name.ValueKind != JsonValueKind.String || !SchemaName().IsMatch(name.GetString()!))
            throw GpudException.Invalid("Invalid 'response_format.json_schema.name': it must be 1 to 64 letters, digits, underscores or dashes.", "response_format.json_schema.name", "invalid_value");
        foreach (var (field, kinds, what) in new[] { ("description", new[] { JsonValueKind.String }, "a string"), ("strict", [JsonValueKind.True, JsonValueKind.False], "a boolean") })
        {
            if (spec.TryGetProperty(field, out var v) && v.ValueKind != JsonValueKind.Null && !kinds.Contains(v.ValueKind))
                throw GpudException.Invalid($"Invalid value for 'response_format.json_schema.{field}': it must be {what}.", $"response_format.json_schema.{field}", "invalid_type");
        }
        JsonElement? schema = spec.TryGetProperty("schema", out var s) && s.ValueKind != JsonValueKind.Null ? s : null;
        if (schema is { ValueKind: not (JsonValueKind.Object or JsonValueKind.True) })
            throw GpudException.Invalid("Invalid value for 'response_format.json_schema.schema': it must be a JSON Schema object.", "response_format.json_schema.schema", "invalid_type");
        return new OutputFormat(Json: true, name.GetString(), schema);
    }

    /// <summary>The constraint each sequence gets, or null for plain text.</summary>
    public Func<ITokenConstraint>? Constraint(StructuredOutput output)
    {
        ArgumentNullException.ThrowIfNull(output);
        if (!Json) return null;
        if (Schema is not { } schema) return output.JsonObject();
        try
        {
            return output.JsonSchema(schema);
        }
        catch (JsonSchemaException e)
        {
            throw GpudException.Invalid($"Invalid schema for response_format '{Name}': {e.Message}", "response_format", "invalid_json_schema");
        }
    }

    [GeneratedRegex("^[a-zA-Z0-9_-]{1,64}$")]
    private static partial Regex SchemaName();
}
