using Gpud.Engine.Templates;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace Gpud.Engine.Templates.Jinja;

/// <summary>The filters, tests and string/dict methods chat templates use, with Python's semantics.</summary>
internal static class JinjaFilters
{
    private static readonly JsonSerializerOptions Json = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static object? Apply(string name, object? value, IReadOnlyList<object?> args, IReadOnlyDictionary<string, object?> named)
    {
        object? Arg(int i, string key, object? fallback = null) => i < args.Count ? args[i] : named.TryGetValue(key, out var v) ? v : fallback;
        switch (name)
        {
            case "trim": return PyStrip(JinjaRuntime.Str(value), null, true, true);
            case "length" or "count":
                return value switch
                {
                    string s => (long)s.Length,
                    List<object?> l => (long)l.Count,
                    Dictionary<string, object?> dict => (long)dict.Count,
                    _ => 0L,
                };
            case "tojson": return ToJson(value, Arg(0, "indent") is long indent ? (int)indent : null);
            case "lower": return JinjaRuntime.Str(value).ToLowerInvariant();
            case "upper": return JinjaRuntime.Str(value).ToUpperInvariant();
            case "capitalize":
                var text = JinjaRuntime.Str(value);
                return text.Length == 0 ? text : char.ToUpperInvariant(text[0]) + text[1..].ToLowerInvariant();
            case "title": return CultureInfo.InvariantCulture.TextInfo.ToTitleCase(JinjaRuntime.Str(value).ToLowerInvariant());
            case "string": return JinjaRuntime.Str(value);
            case "int": return value is string s2 && double.TryParse(s2, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? (long)d : JinjaRuntime.ToLong(value);
            case "float": return JinjaRuntime.ToDouble(value);
            case "first": return value is List<object?> { Count: > 0 } first ? first[0] : value is string { Length: > 0 } fs ? fs[0].ToString() : Undefined.Instance;
            case "last": return value is List<object?> { Count: > 0 } last ? last[^1] : value is string { Length: > 0 } ls ? ls[^1].ToString() : Undefined.Instance;
            case "join":
                return string.Join(JinjaRuntime.Str(Arg(0, "d", "")), AsList(value).Select(JinjaRuntime.Str));
            case "default" or "d":
                var useFalsy = JinjaRuntime.Truthy(Arg(1, "boolean", false));
                return value is Undefined || (useFalsy && !JinjaRuntime.Truthy(value)) ? Arg(0, "default_value", "") : value;
            case "list": return AsList(value).ToList();
            case "reverse": return value is string rs ? new string(rs.Reverse().ToArray()) : Enumerable.Reverse(AsList(value)).ToList();
            case "items":
                return value is Dictionary<string, object?> map ? map.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList() : new List<object?>();
            case "selectattr" or "rejectattr":
                var attribute = JinjaRuntime.Str(Arg(0, "attribute"));
                var keep = name == "selectattr";
                return AsList(value).Where(item =>
                {
                    var field = JinjaRuntime.GetAttribute(item, attribute);
                    var passes = args.Count > 1 ? Test(JinjaRuntime.Str(args[1]), field, args.Skip(2).ToList()) : JinjaRuntime.Truthy(field);
                    return passes == keep;
                }).ToList();
            case "map":
                if (named.TryGetValue("attribute", out var attr))
                    return AsList(value).Select(item => JinjaRuntime.GetAttribute(item, JinjaRuntime.Str(attr))).ToList();
                var filter = JinjaRuntime.Str(Arg(0, "name"));
                return AsList(value).Select(item => Apply(filter, item, args.Skip(1).ToList(), new Dictionary<string, object?>())).ToList();
            case "safe" or "e" or "escape" or "forceescape":
                return value; // chat templates render text, not HTML: transformers' environment does not autoescape
            case "indent":
                var width = (int)JinjaRuntime.ToLong(Arg(0, "width", 4L));
                var pad = new string(' ', width);
                var lines = JinjaRuntime.Str(value).Split('\n');
                return string.Join("\n", lines.Select((l, i) => i == 0 || l.Length == 0 ? l : pad + l));
            default:
                throw new TemplateRenderException($"The chat template uses the filter '{name}', which gpud does not support.");
        }
    }

    public static bool Test(string name, object? value, IReadOnlyList<object?> args) => name switch
    {
        "defined" => value is not Undefined,
        "undefined" => value is Undefined,
        "none" => value is null,
        "string" => value is string,
        "number" => value is long or double,
        "integer" => value is long,
        "float" => value is double,
        "boolean" => value is bool,
        "true" => value is true,
        "false" => value is false,
        "mapping" => value is Dictionary<string, object?>,
        "sequence" or "iterable" => value is List<object?> or string or Dictionary<string, object?>,
        "callable" => value is JinjaCallable,
        "even" => JinjaRuntime.ToLong(value) % 2 == 0,
        "odd" => JinjaRuntime.ToLong(value) % 2 != 0,
        "equalto" or "eq" or "==" => JinjaRuntime.AreEqual(value, args.Count > 0 ? args[0] : null),
        "ne" or "!=" => !JinjaRuntime.AreEqual(value, args.Count > 0 ? args[0] : null),
        "in" => args.Count > 0 && args[0] is List<object?> list && list.Any(i => JinjaRuntime.AreEqual(i, value)),
        _ => throw new TemplateRenderException($"The chat template uses the test '{name}', which gpud does not support."),
    };

    public static JinjaCallable? StringMethod(string text, string name) => name switch
    {
        "strip" => (args, _) => PyStrip(text, Chars(args), true, true),
        "lstrip" => (args, _) => PyStrip(text, Chars(args), true, false),
        "rstrip" => (args, _) => PyStrip(text, Chars(args), false, true),
        "startswith" => (args, _) => Prefixes(args).Any(p => text.StartsWith(p, StringComparison.Ordinal)),
        "endswith" => (args, _) => Prefixes(args).Any(p => text.EndsWith(p, StringComparison.Ordinal)),
        "split" => (args, _) => Split(text, args.Count > 0 && args[0] is string sep ? sep : null, args.Count > 1 ? (int)JinjaRuntime.ToLong(args[1]) : -1),
        "replace" => (args, _) => text.Replace(JinjaRuntime.Str(args[0]), JinjaRuntime.Str(args[1]), StringComparison.Ordinal),
        "upper" => (_, _) => text.ToUpperInvariant(),
        "lower" => (_, _) => text.ToLowerInvariant(),
        "title" => (_, _) => CultureInfo.InvariantCulture.TextInfo.ToTitleCase(text.ToLowerInvariant()),
        "find" => (args, _) => (long)text.IndexOf(JinjaRuntime.Str(args[0]), StringComparison.Ordinal),
        "count" => (args, _) => (long)CountOf(text, JinjaRuntime.Str(args[0])),
        _ => null,
    };

    public static JinjaCallable? DictMethod(Dictionary<string, object?> map, string name) => name switch
    {
        "get" => (args, _) => map.TryGetValue(JinjaRuntime.Str(args[0]), out var v) ? v : args.Count > 1 ? args[1] : null,
        "items" => (_, _) => map.Select(p => (object?)new List<object?> { p.Key, p.Value }).ToList(),
        "keys" => (_, _) => map.Keys.Select(k => (object?)k).ToList(),
        "values" => (_, _) => map.Values.ToList(),
        _ => null,
    };

    /// <summary>Python's str.strip/lstrip/rstrip: whitespace by default (Python's definition), else the given characters.</summary>
    internal static string PyStrip(string text, string? chars, bool left, bool right)
    {
        bool Strips(char c) => chars is null ? char.IsWhiteSpace(c) || c is >= '\x1c' and <= '\x1f' : chars.Contains(c, StringComparison.Ordinal);
        int start = 0, end = text.Length;
        if (left) while (start < end && Strips(text[start])) start++;
        if (right) while (end > start && Strips(text[end - 1])) end--;
        return text[start..end];
    }

    private static string? Chars(IReadOnlyList<object?> args) => args.Count > 0 && args[0] is string s ? s : null;

    private static IEnumerable<string> Prefixes(IReadOnlyList<object?> args) =>
        args.Count > 0 && args[0] is List<object?> many ? many.Select(JinjaRuntime.Str) : [JinjaRuntime.Str(args.Count > 0 ? args[0] : "")];

    private static List<object?> Split(string text, string? separator, int maxSplit)
    {
        if (separator is null)
        {
            var words = text.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            return words.Select(w => (object?)w).ToList();
        }
        var parts = maxSplit < 0 ? text.Split(separator) : text.Split(separator, maxSplit + 1);
        return parts.Select(p => (object?)p).ToList();
    }

    private static int CountOf(string text, string part)
    {
        if (part.Length == 0) return text.Length + 1;
        var count = 0;
        for (var i = text.IndexOf(part, StringComparison.Ordinal); i >= 0; i = text.IndexOf(part, i + part.Length, StringComparison.Ordinal)) count++;
        return count;
    }

    private static IEnumerable<object?> AsList(object? value) => value switch
    {
        List<object?> list => list,
        string s => s.Select(c => (object?)c.ToString()),
        Dictionary<string, object?> d => d.Keys,
        _ => [],
    };

    /// <summary>transformers' tojson: json.dumps(ensure_ascii=False) with Python's ", " and ": " separators.</summary>
    private static string ToJson(object? value, int? indent)
    {
        var text = new StringBuilder();
        Write(value, 0);
        return text.ToString();

        void Write(object? v, int depth)
        {
            switch (v)
            {
                case null or Undefined: text.Append("null"); break;
                case bool b: text.Append(b ? "true" : "false"); break;
                case long l: text.Append(l.ToString(CultureInfo.InvariantCulture)); break;
                case double d: text.Append(JinjaRuntime.Str(d)); break;
                case string s: text.Append(JsonSerializer.Serialize(s, Json)); break;
                case List<object?> list:
                    text.Append('[');
                    for (var i = 0; i < list.Count; i++)
                    {
                        if (i > 0) text.Append(indent is null ? ", " : ",");
                        NewLine(depth + 1);
                        Write(list[i], depth + 1);
                    }
                    if (list.Count > 0) NewLine(depth);
                    text.Append(']');
                    break;
                case Dictionary<string, object?> map:
                    text.Append('{');
                    var first = true;
                    foreach (var (key, item) in map)
                    {
                        if (!first) text.Append(indent is null ? ", " : ",");
                        first = false;
                        NewLine(depth + 1);
                        text.Append(JsonSerializer.Serialize(key, Json)).Append(": ");
                        Write(item, depth + 1);
                    }
                    if (map.Count > 0) NewLine(depth);
                    text.Append('}');
                    break;
                default: text.Append(JsonSerializer.Serialize(JinjaRuntime.Str(v), Json)); break;
            }
        }

        void NewLine(int depth)
        {
            if (indent is { } width) text.Append('\n').Append(' ', width * depth);
        }
    }
}
