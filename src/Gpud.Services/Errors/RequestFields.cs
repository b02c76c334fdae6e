using System.Globalization;
using System.Text.Json;

namespace Gpud.Services.Errors;

/// <summary>
/// Typed reads of request JSON fields, each failure a 400 naming the field (<c>param</c>) with an OpenAI-style message:
/// "Invalid value for 'temperature': it must be at least 0 and at most 2."
/// </summary>
public static class RequestFields
{
    /// <summary>
    /// A request body's fields by name, nulls left out (an absent field and a null one mean the same). A body that is
    /// not an object, or a field the endpoint does not know, is a 400 as OpenAI words it: never silently ignored.
    /// </summary>
    public static Dictionary<string, JsonElement> Known(JsonElement body, IReadOnlySet<string> known)
    {
        ArgumentNullException.ThrowIfNull(known);
        if (body.ValueKind != JsonValueKind.Object) throw GpudException.Invalid("The request body must be a JSON object.", null);
        var fields = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        foreach (var property in body.EnumerateObject())
        {
            if (!known.Contains(property.Name))
                throw GpudException.Invalid($"Unrecognized request argument supplied: {property.Name}", property.Name, "unknown_parameter");
            if (property.Value.ValueKind != JsonValueKind.Null) fields[property.Name] = property.Value;
        }
        return fields;
    }

    public const int MaxMetadataPairs = 16;
    public const int MaxMetadataKeyLength = 64;
    public const int MaxMetadataValueLength = 512;

    /// <summary>OpenAI's <c>metadata</c>: at most 16 string pairs, keys up to 64 characters, values up to 512; null when null.</summary>
    public static Dictionary<string, string>? Metadata(JsonElement value)
    {
        if (value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Object) throw GpudException.Invalid("metadata must be an object of string values.", "metadata");
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in value.EnumerateObject())
        {
            if (pair.Name.Length is 0 or > MaxMetadataKeyLength)
                throw GpudException.Invalid($"metadata keys must be 1 to {MaxMetadataKeyLength} characters.", "metadata");
            if (pair.Value.ValueKind != JsonValueKind.String || pair.Value.GetString()!.Length > MaxMetadataValueLength)
                throw GpudException.Invalid($"metadata values must be strings of at most {MaxMetadataValueLength} characters ('{pair.Name}').", "metadata");
            metadata[pair.Name] = pair.Value.GetString()!;
        }
        if (metadata.Count > MaxMetadataPairs)
            throw GpudException.Invalid($"metadata can have at most {MaxMetadataPairs} pairs.", "metadata");
        return metadata;
    }

    /// <summary>A required field of a <see cref="Known"/> body: a non-empty string.</summary>
    public static string RequiredString(Dictionary<string, JsonElement> fields, string name)
    {
        ArgumentNullException.ThrowIfNull(fields);
        if (!fields.TryGetValue(name, out var value))
            throw GpudException.Invalid($"Missing required parameter: '{name}'.", name, "missing_required_parameter");
        return value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } text
            ? text
            : throw Invalid(name, "must be a non-empty string", "invalid_type");
    }

    /// <summary>A list endpoint's <c>limit</c>: <paramref name="fallback"/> when absent, else 1 to <paramref name="max"/>.</summary>
    public static int ListLimit(int? limit, int fallback, int max)
    {
        var take = limit ?? fallback;
        return take is >= 1 && take <= max
            ? take
            : throw GpudException.Invalid($"limit must be between 1 and {max}.", "limit", "integer_out_of_range");
    }

    /// <summary>A list endpoint's <c>order</c> (<c>asc</c> or <c>desc</c>): true for ascending, <paramref name="fallback"/> when absent.</summary>
    public static bool Ascending(string? order, bool fallback) => order switch
    {
        null => fallback,
        "asc" => true,
        "desc" => false,
        _ => throw GpudException.Invalid("order must be 'asc' or 'desc'.", "order"),
    };

    public const int MinExpirySeconds = 3600;
    public const int MaxExpirySeconds = 2_592_000;

    /// <summary>
    /// OpenAI's <c>expires_after</c> for a file gpud writes: <c>{"anchor": "created_at", "seconds": 3600..2592000}</c>;
    /// returns the seconds.
    /// </summary>
    public static int ExpiresAfter(JsonElement value, string param)
    {
        if (value.ValueKind != JsonValueKind.Object) throw Invalid(param, "must be an object with anchor and seconds", "invalid_type");
        if (value.EnumerateObject().Select(p => p.Name).FirstOrDefault(name => name is not ("anchor" or "seconds")) is { } unknown)
            throw GpudException.Invalid($"Unrecognized request argument supplied: {param}.{unknown}", $"{param}.{unknown}", "unknown_parameter");
        if (!value.TryGetProperty("anchor", out var anchor) || anchor.ValueKind != JsonValueKind.String || anchor.GetString() != "created_at")
            throw Invalid($"{param}.anchor", "must be 'created_at'");
        if (!value.TryGetProperty("seconds", out var seconds))
            throw GpudException.Invalid($"Missing required parameter: '{param}.seconds'.", $"{param}.seconds", "missing_required_parameter");
        return Integer(seconds, $"{param}.seconds", MinExpirySeconds, MaxExpirySeconds);
    }

    public static int Integer(JsonElement value, string param, int min, int max)
    {
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt64(out var n))
            throw Invalid(param, "must be an integer", "invalid_type");
        if (n < min || n > max)
            throw Invalid(param, max == int.MaxValue ? $"must be at least {min}" : $"must be between {min} and {max}", "integer_out_of_range");
        return (int)n;
    }

    public static double Number(JsonElement value, string param, double min, double max, bool exclusiveMin = false, bool exclusiveMax = false)
    {
        if (value.ValueKind != JsonValueKind.Number) throw Invalid(param, "must be a number", "invalid_type");
        var x = value.GetDouble();
        if (x < min || x > max || (exclusiveMin && x <= min) || (exclusiveMax && x >= max) || !double.IsFinite(x))
        {
            var low = exclusiveMin ? $"greater than {Format(min)}" : $"at least {Format(min)}";
            var high = exclusiveMax ? $"less than {Format(max)}" : $"at most {Format(max)}";
            throw Invalid(param, $"must be {low} and {high}", "number_out_of_range");
        }
        return x;
    }

    public static string Format(double x) => x.ToString(CultureInfo.InvariantCulture);

    public static bool Boolean(JsonElement value, string param) => value.ValueKind switch
    {
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => throw Invalid(param, "must be true or false", "invalid_type"),
    };

    public static T Choice<T>(JsonElement value, string param, Dictionary<string, T> choices) =>
        value.ValueKind == JsonValueKind.String && choices.TryGetValue(value.GetString()!, out var choice)
            ? choice
            : throw Invalid(param, $"must be one of {string.Join(", ", choices.Keys.Select(k => $"'{k}'"))}");

    public static GpudException Invalid(string param, string what, string? code = null) =>
        GpudException.Invalid($"Invalid value for '{param}': it {what}.", param, code);
}
