using System.Text.Encodings.Web;
using System.Text.Json;

namespace Gpud.Engine.Generation.Constraints;

/// <summary>
/// A JSON Schema compiled for constrained decoding (OpenAI's <c>response_format: json_schema</c>): every text its
/// <see cref="Start"/> state reads to completion is an instance of the schema. The subset: <c>type</c> (one or a list),
/// <c>properties</c>, <c>required</c>, <c>additionalProperties</c>, <c>items</c>, tuples (<c>prefixItems</c>, or an
/// array of <c>items</c> with <c>additionalItems</c>), <c>minItems</c>, <c>maxItems</c>,
/// <c>minLength</c>, <c>maxLength</c>, <c>pattern</c> (<see cref="StringPattern"/>), <c>format</c> (date-time, date,
/// time, duration, uuid, email, hostname, ipv4, ipv6: OpenAI's list; and uri), <c>minimum</c>, <c>maximum</c> (and
/// exclusive forms), <c>multipleOf</c>, <c>enum</c>, <c>const</c>, <c>anyOf</c>, <c>oneOf</c> of branches that exclude
/// each other, <c>allOf</c> of one schema, <c>$ref</c> within the schema (recursion included) and annotations
/// (<c>title</c>, <c>description</c>, …). Any other keyword is refused by name rather than ignored: an answer that
/// silently breaks a <c>not</c> would be worse than an error. Properties are written in declaration order; optional
/// ones may be left out. The root is an object.
/// </summary>
public sealed class JsonSchema
{
    /// <summary>
    /// Objects and arrays of free JSON (a schema of <c>{}</c> or <c>true</c>) nested deeper are not started; a scalar
    /// can always take their place. Declared structure (a recursive schema) nests as deep as the answer's length takes
    /// it: a limit there could leave a required value nothing to start with.
    /// </summary>
    public const int MaxDepth = 64;

    private readonly RootNode _root;

    private JsonSchema(RootNode root) => _root = root;

    /// <summary>The state before the answer's first byte.</summary>
    public JsonSchemaGrammar Start => new(new SchemaFrame(_root, 0, 0, 0, 0, null));

    /// <exception cref="JsonSchemaException">The schema is not valid, uses an unsupported keyword, or admits no value.</exception>
    public static JsonSchema Compile(JsonElement schema) => new(new RootNode(Document(schema)));

    /// <summary>
    /// Function calls as vLLM forces them (<c>tool_choice</c> "required" or a named function): the text is
    /// <c>{"name": …, "arguments": {…}}</c> for one of <paramref name="tools"/>, its arguments an instance of that tool's
    /// parameters (no parameters: <c>{}</c>), or with <paramref name="parallel"/> a non-empty list of such calls.
    /// </summary>
    /// <exception cref="JsonSchemaException">A tool's parameters cannot be compiled (<see cref="JsonSchemaException.Tool"/> says which).</exception>
    public static JsonSchema ToolCalls(IReadOnlyList<(string Name, JsonElement? Parameters)> tools, bool parallel)
    {
        ArgumentNullException.ThrowIfNull(tools);
        if (tools.Count == 0) throw new ArgumentException("No tools to call.", nameof(tools));
        var keys = new StringNode();
        var calls = new List<SchemaNode>();
        foreach (var (tool, i) in tools.Select((t, i) => (t, i)))
        {
            SchemaNode arguments;
            try
            {
                arguments = tool.Parameters is { } parameters ? Document(parameters) : new ObjectNode(keys); // no properties, no others: {}
            }
            catch (JsonSchemaException e)
            {
                throw new JsonSchemaException(e.Location, e.Reason, i);
            }
            var call = new ObjectNode(keys);
            call.SetProperties([
                new Property("name", Key("name"), true, new LiteralNode([Key(tool.Name)])),
                new Property("arguments", Key("arguments"), true, arguments),
            ]);
            calls.Add(call);
        }
        SchemaNode one = calls.Count == 1 ? calls[0] : new ChoiceNode { Alternatives = [.. calls] };
        var value = parallel ? new ArrayNode(one, 1, null) : one;
        Seal(value);
        return new JsonSchema(new RootNode(value));
    }

    /// <summary>A whole schema document, checked, its dead readings pruned; its root an object.</summary>
    private static SchemaNode Document(JsonElement schema)
    {
        var value = new Compiler(schema).Compile(schema, "#");
        Seal(value);
        if (!Concrete(value).All(n => n is ObjectNode))
            throw new JsonSchemaException("#", "the root must be an object (\"type\": \"object\"), as in OpenAI's structured outputs");
        return value;
    }

    /// <summary>Checks the graph under <paramref name="value"/> (references, satisfiability) and prunes what no finite value completes.</summary>
    private static void Seal(SchemaNode value)
    {
        var nodes = Reachable(value);
        CheckReferenceCycles(nodes);
        var satisfiable = Satisfiable(nodes);
        if (!satisfiable.Contains(value))
            throw new JsonSchemaException("#", "no finite JSON value satisfies it (a required property or item always needs another of its own kind)");
        Prune(nodes, satisfiable);
    }

    private sealed class Compiler(JsonElement document)
    {
        private static readonly HashSet<string> Annotations =
            ["title", "description", "default", "examples", "$schema", "$id", "$comment", "$defs", "definitions", "deprecated", "readOnly", "writeOnly", "discriminator"];

        private static readonly HashSet<string> Keywords =
            ["type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "prefixItems", "additionalItems", "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "enum", "const", "anyOf", "oneOf", "allOf", "$ref"];

        private readonly StringNode _string = new();
        private readonly Dictionary<string, RefNode> _refs = new(StringComparer.Ordinal);
        private ChoiceNode? _any;

        public SchemaNode Compile(JsonElement schema, string at)
        {
            switch (schema.ValueKind)
            {
                case JsonValueKind.True:
                    return Any();
                case JsonValueKind.False:
                    throw new JsonSchemaException(at, "the schema false admits no value");
                case not JsonValueKind.Object:
                    throw new JsonSchemaException(at, "a schema must be an object or a boolean");
            }
            var used = new List<string>();
            foreach (var keyword in schema.EnumerateObject())
            {
                if (Keywords.Contains(keyword.Name)) used.Add(keyword.Name);
                else if (!Annotations.Contains(keyword.Name))
                    throw new JsonSchemaException(at, $"'{keyword.Name}' is not supported by gpud's structured outputs (supported: {string.Join(", ", Keywords)})");
            }
            foreach (var alone in new[] { "$ref", "anyOf", "oneOf", "allOf" })
            {
                if (used.Contains(alone) && used.Count > 1)
                    throw new JsonSchemaException(at, $"'{alone}' cannot be combined with '{used.First(k => k != alone)}' in one schema");
            }
            if (schema.TryGetProperty("$ref", out var reference))
                return Reference(reference.ValueKind == JsonValueKind.String ? reference.GetString()! : throw new JsonSchemaException(at + "/$ref", "must be a string"), at);
            if (schema.TryGetProperty("allOf", out var allOf))
            {
                // One schema only (Pydantic v1 wraps a $ref so as to describe it): an intersection of several is not compiled.
                if (allOf.ValueKind != JsonValueKind.Array || allOf.GetArrayLength() != 1)
                    throw new JsonSchemaException(at + "/allOf", "gpud's structured outputs take 'allOf' with exactly one schema");
                return Compile(allOf[0], at + "/allOf/0");
            }
            if (schema.TryGetProperty("oneOf", out var oneOf))
            {
                // Exactly one branch may match. Writing any one of them is the same when no value can match two, as with
                // a discriminated union (Pydantic's and zod's): branches must be told apart by type, literal or tag.
                if (oneOf.ValueKind != JsonValueKind.Array || oneOf.GetArrayLength() == 0) throw new JsonSchemaException(at + "/oneOf", "must be a non-empty array of schemas");
                var branches = oneOf.EnumerateArray().ToList();
                for (var i = 0; i < branches.Count; i++)
                {
                    for (var j = i + 1; j < branches.Count; j++)
                    {
                        if (!Exclusive(branches[i], branches[j], at))
                            throw new JsonSchemaException(at + "/oneOf", $"branches {i} and {j} may both match one value; gpud takes 'oneOf' whose branches differ in type, in their literals or in a required property's 'const'/'enum' (a discriminated union), else use 'anyOf'");
                    }
                }
                return new ChoiceNode { Alternatives = [.. branches.Select((s, i) => Compile(s, $"{at}/oneOf/{i}"))] };
            }
            if (schema.TryGetProperty("anyOf", out var anyOf))
            {
                if (anyOf.ValueKind != JsonValueKind.Array || anyOf.GetArrayLength() == 0) throw new JsonSchemaException(at + "/anyOf", "must be a non-empty array of schemas");
                return new ChoiceNode { Alternatives = [.. anyOf.EnumerateArray().Select((s, i) => Compile(s, $"{at}/anyOf/{i}"))] };
            }
            var types = Types(schema, at);
            var hasEnum = schema.TryGetProperty("enum", out var enumValues);
            if (hasEnum || schema.TryGetProperty("const", out _))
            {
                if (hasEnum && schema.TryGetProperty("const", out _)) throw new JsonSchemaException(at, "'enum' and 'const' cannot be combined in one schema");
                if (hasEnum && (enumValues.ValueKind != JsonValueKind.Array || enumValues.GetArrayLength() == 0))
                    throw new JsonSchemaException(at + "/enum", "must be a non-empty array");
                var values = hasEnum ? enumValues.EnumerateArray().ToList() : [schema.GetProperty("const")];
                foreach (var v in values)
                {
                    if (types is not null && !types.Any(t => Matches(v, t)))
                        throw new JsonSchemaException(at + (hasEnum ? "/enum" : "/const"), $"{v.GetRawText()} is not of type {string.Join(" or ", types)}");
                }
                return Literal(values);
            }
            var nodes = (types?.Cast<string?>() ?? Inferred(schema)).Select(t => t switch
            {
                null => Any(),
                "object" => Object(schema, at),
                "array" => Array(schema, at),
                "string" => Text(schema, at),
                "number" => new NumberNode(integer: false, Bounds(schema, at, integer: false)),
                "integer" => new NumberNode(integer: true, Bounds(schema, at, integer: true)),
                "boolean" => Literal([JsonTrue, JsonFalse]),
                "null" => Literal([JsonNull]),
                _ => (SchemaNode)null!,
            }).ToArray();
            return nodes.Length == 1 ? nodes[0] : new ChoiceNode { Alternatives = nodes };
        }

        private static List<string>? Types(JsonElement schema, string at)
        {
            if (!schema.TryGetProperty("type", out var type)) return null;
            string[] known = ["object", "array", "string", "number", "integer", "boolean", "null"];
            var names = type.ValueKind switch
            {
                JsonValueKind.String => [type.GetString()!],
                JsonValueKind.Array when type.GetArrayLength() > 0 && type.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String) =>
                    type.EnumerateArray().Select(t => t.GetString()!).Distinct().ToList(),
                _ => throw new JsonSchemaException(at + "/type", "must be a type name or a non-empty array of them"),
            };
            foreach (var name in names)
            {
                if (!known.Contains(name)) throw new JsonSchemaException(at + "/type", $"'{name}' is not one of {string.Join(", ", known)}");
            }
            return names;
        }

        /// <summary>Without 'type': an object or array by its keywords, else any value.</summary>
        private static List<string?> Inferred(JsonElement schema) =>
            schema.TryGetProperty("properties", out _) || schema.TryGetProperty("required", out _) || schema.TryGetProperty("additionalProperties", out _) ? ["object"]
            : schema.TryGetProperty("items", out _) || schema.TryGetProperty("prefixItems", out _) || schema.TryGetProperty("minItems", out _) || schema.TryGetProperty("maxItems", out _) ? ["array"]
            : [null];

        private static bool Matches(JsonElement value, string type) => type switch
        {
            "object" => value.ValueKind == JsonValueKind.Object,
            "array" => value.ValueKind == JsonValueKind.Array,
            "string" => value.ValueKind == JsonValueKind.String,
            "number" => value.ValueKind == JsonValueKind.Number,
            "integer" => value.ValueKind == JsonValueKind.Number && value.TryGetDecimal(out var d) && d == decimal.Truncate(d),
            "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
            _ => value.ValueKind == JsonValueKind.Null,
        };

        private ObjectNode Object(JsonElement schema, string at)
        {
            var node = new ObjectNode(_string);
            SchemaNode? additional = schema.TryGetProperty("additionalProperties", out var extra)
                ? extra.ValueKind == JsonValueKind.False ? null : Compile(extra, at + "/additionalProperties")
                : Any();
            var required = new List<string>();
            if (schema.TryGetProperty("required", out var names))
            {
                if (names.ValueKind != JsonValueKind.Array || names.EnumerateArray().Any(n => n.ValueKind != JsonValueKind.String))
                    throw new JsonSchemaException(at + "/required", "must be an array of property names");
                required.AddRange(names.EnumerateArray().Select(n => n.GetString()!).Distinct());
            }
            var properties = new List<Property>();
            if (schema.TryGetProperty("properties", out var declared))
            {
                if (declared.ValueKind != JsonValueKind.Object) throw new JsonSchemaException(at + "/properties", "must be an object of schemas");
                foreach (var property in declared.EnumerateObject())
                    properties.Add(new Property(property.Name, Key(property.Name), required.Contains(property.Name), Compile(property.Value, $"{at}/properties/{Escape(property.Name)}")));
            }
            foreach (var name in required.Where(n => properties.All(p => p.Name != n)))
            {
                if (additional is null)
                    throw new JsonSchemaException(at + "/required", $"'{name}' is required but not in 'properties', and 'additionalProperties' is false");
                properties.Add(new Property(name, Key(name), true, additional));
            }
            if (properties.Count > 0) node.SetProperties([.. properties]);
            else node.Values = additional;
            return node;
        }

        private StringNode Text(JsonElement schema, string at)
        {
            var (min, max) = (Count(schema, at, "minLength") ?? 0, Count(schema, at, "maxLength"));
            if (max < min) throw new JsonSchemaException(at, $"'minLength' ({min}) is greater than 'maxLength' ({max})");
            var expressions = new List<string>();
            if (schema.TryGetProperty("format", out var format))
            {
                if (format.ValueKind != JsonValueKind.String || !Formats.TryGetValue(format.GetString()!, out var expression))
                    throw new JsonSchemaException(at + "/format", $"{format.GetRawText()} is not a format gpud enforces (it enforces {string.Join(", ", Formats.Keys)})");
                expressions.Add(expression);
                if (format.GetString() == "hostname") max = Math.Min(max ?? MaxHostname, MaxHostname);
            }
            if (schema.TryGetProperty("pattern", out var source))
            {
                if (source.ValueKind != JsonValueKind.String) throw new JsonSchemaException(at + "/pattern", "must be a string");
                expressions.Add(source.GetString()!);
            }
            StringPattern? pattern = null;
            try
            {
                if (expressions.Count > 0) pattern = StringPattern.Compile(expressions);
            }
            catch (FormatException e)
            {
                var where = expressions.Count == 2 || !schema.TryGetProperty("format", out _) ? "/pattern" : "/format";
                throw new JsonSchemaException(at + where, $"gpud cannot enforce {(where == "/pattern" ? $"'{source.GetString()}'" : "it")}: {e.Message}");
            }
            if (pattern is not null && pattern.Distance(pattern.Start) is var shortest && (shortest == StringPattern.Unreachable || shortest > max))
            {
                throw new JsonSchemaException(at + (expressions.Count == 1 && schema.TryGetProperty("pattern", out _) ? "/pattern" : ""), shortest == StringPattern.Unreachable
                    ? "no string matches everything it asks together (its format, pattern and lookaheads)"
                    : $"its shortest match has {shortest} characters, more than 'maxLength' ({max})");
            }
            if (pattern is not null && min > 0 && pattern.Longest(pattern.Start) is var longest && longest != StringPattern.Unbounded && longest < min)
                throw new JsonSchemaException(at + (expressions.Count == 1 && schema.TryGetProperty("pattern", out _) ? "/pattern" : ""), $"its longest match has {longest} characters, fewer than 'minLength' ({min})");
            if (pattern is not null && min > 0 && max is { } most && !pattern.Viable(pattern.Start, most, min))
                throw new JsonSchemaException(at + (expressions.Count == 1 && schema.TryGetProperty("pattern", out _) ? "/pattern" : ""),
                    $"no match has between {min} and {most} characters ('minLength' and 'maxLength')");
            return min == 0 && max is null && pattern is null ? _string : new StringNode(min, max, pattern);
        }

        // The formats as regular expressions: each matches only valid values (a subset where the RFC allows variants:
        // 'T' and 'Z' upper case, no leap second), so a validator that checks formats accepts every answer.
        private const string Date =
            @"(?:(?:\d\d[2468][048]|\d\d[13579][26]|\d\d0[48]|[02468][048]00|[13579][26]00)-02-29|\d{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]\d|3[01])|(?:0[469]|11)-(?:0[1-9]|[12]\d|30)|02-(?:0[1-9]|1\d|2[0-8])))";

        private const string Time = @"(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)";

        private const string Label = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";

        private const string Octet = @"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)";

        private const int MaxHostname = 253; // RFC 1123's limit on a whole name; the pattern limits each label

        private const string Hex = "[0-9a-fA-F]{1,4}";

        // Every RFC 4291 text form of eight 16-bit groups: in full, or with one "::" standing for one or more zero
        // groups (no embedded IPv4 tail, no zone).
        private const string Ipv6 =
            $"(?:(?:{Hex}:){{7}}{Hex}|(?:{Hex}:){{1,7}}:|(?:{Hex}:){{1,6}}:{Hex}|(?:{Hex}:){{1,5}}(?::{Hex}){{1,2}}|(?:{Hex}:){{1,4}}(?::{Hex}){{1,3}}"
            + $"|(?:{Hex}:){{1,3}}(?::{Hex}){{1,4}}|(?:{Hex}:){{1,2}}(?::{Hex}){{1,5}}|{Hex}:(?::{Hex}){{1,6}}|:(?:(?::{Hex}){{1,7}}|:))";

        // RFC 3986 URIs with a scheme: "//" and an authority (userinfo, a registered name, a port) or a bare path,
        // then a query and a fragment; no IP literals in brackets. Characters outside the grammar come percent-encoded.
        private const string Pct = "%[0-9A-Fa-f]{2}";

        private const string Pchar = $"(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|{Pct})";

        private const string UriPattern =
            $"[A-Za-z][A-Za-z0-9+.-]*:(?://(?:(?:[A-Za-z0-9._~!$&'()*+,;=:-]|{Pct})*@)?(?:[A-Za-z0-9._~!$&'()*+,;=-]|{Pct})*(?::[0-9]*)?(?:/{Pchar}*)*"
            + $"|/?(?:{Pchar}+(?:/{Pchar}*)*)?)(?:\\?(?:{Pchar}|[/?])*)?(?:#(?:{Pchar}|[/?])*)?";

        // ISO 8601 durations as JSON Schema validators read them: at least one component, a T only before a time one.
        private const string DurationDate = @"(?:\d+Y(?:\d+M)?(?:\d+D)?|\d+M(?:\d+D)?|\d+D)";

        private const string DurationTime = @"T(?:\d+H(?:\d+M)?(?:\d+S)?|\d+M(?:\d+S)?|\d+S)";

        private static readonly Dictionary<string, string> Formats = new(StringComparer.Ordinal)
        {
            ["date-time"] = $"^{Date}T{Time}$",
            ["date"] = $"^{Date}$",
            ["time"] = $"^{Time}$",
            ["uuid"] = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            ["email"] = $@"^[A-Za-z0-9_%+-]+(?:\.[A-Za-z0-9_%+-]+)*@{Label}(?:\.{Label})+$",
            ["ipv4"] = $@"^(?:{Octet}\.){{3}}{Octet}$",
            ["ipv6"] = $"^{Ipv6}$",
            ["hostname"] = $@"^{Label}(?:\.{Label})*$",
            ["uri"] = $"^{UriPattern}$",
            ["duration"] = $"^P(?:{DurationDate}(?:{DurationTime})?|{DurationTime}|\\d+W)$",
        };

        private static int? Count(JsonElement schema, string at, string keyword) => !schema.TryGetProperty(keyword, out var n) ? null
            : n.ValueKind == JsonValueKind.Number && n.TryGetInt32(out var count) && count >= 0 ? count
            : throw new JsonSchemaException($"{at}/{keyword}", "must be a non-negative integer");

        /// <summary>
        /// An array; a tuple is <c>prefixItems</c> (2020-12, Pydantic) or an array of <c>items</c> (draft 7), then
        /// <c>items</c> or <c>additionalItems</c> for the rest, where <c>false</c> allows none.
        /// </summary>
        private ArrayNode Array(JsonElement schema, string at)
        {
            var (min, max) = (Count(schema, at, "minItems") ?? 0, Count(schema, at, "maxItems"));
            if (max < min) throw new JsonSchemaException(at, $"'minItems' ({min}) is greater than 'maxItems' ({max})");
            SchemaNode[] Tuple(JsonElement list, string keyword) => list.ValueKind == JsonValueKind.Array
                ? [.. list.EnumerateArray().Select((s, i) => Compile(s, $"{at}/{keyword}/{i}"))]
                : throw new JsonSchemaException($"{at}/{keyword}", "must be an array of schemas");
            SchemaNode[] prefix = [];
            var rest = "items";
            if (schema.TryGetProperty("prefixItems", out var prefixItems)) prefix = Tuple(prefixItems, "prefixItems");
            if (schema.TryGetProperty("items", out var itemSchema) && itemSchema.ValueKind == JsonValueKind.Array)
            {
                if (prefix.Length > 0) throw new JsonSchemaException(at + "/items", "an array of schemas cannot follow 'prefixItems'");
                (prefix, rest) = (Tuple(itemSchema, "items"), "additionalItems");
            }
            else if (schema.TryGetProperty("additionalItems", out _))
            {
                throw new JsonSchemaException(at + "/additionalItems", "applies only after an array of 'items'");
            }
            SchemaNode items = Any();
            if (schema.TryGetProperty(rest, out var restSchema))
            {
                if (restSchema.ValueKind == JsonValueKind.False) max = Math.Min(max ?? prefix.Length, prefix.Length); // no items past the tuple
                else items = Compile(restSchema, $"{at}/{rest}");
            }
            if (max < min) throw new JsonSchemaException(at, $"'minItems' ({min}) is more than the {max} items it allows");
            return new ArrayNode(items, min, max, prefix);
        }

        /// <summary>
        /// minimum, maximum and their exclusive forms, as inclusive whole bounds for integers. Bounds past what
        /// <see cref="NumberBounds.MaxDigits"/> digits can write (zod's ±(2^53 − 1) are well inside) leave that side open.
        /// </summary>
        private static NumberBounds? Bounds(JsonElement schema, string at, bool integer)
        {
            var limit = 1e18m;
            (decimal? Value, bool Exclusive) Bound(string inclusive, string exclusive, bool lower)
            {
                (decimal? Value, bool Exclusive) found = (null, false);
                foreach (var (keyword, isExclusive) in new[] { (inclusive, false), (exclusive, true) })
                {
                    if (!schema.TryGetProperty(keyword, out var v)) continue;
                    if (v.ValueKind != JsonValueKind.Number) throw new JsonSchemaException($"{at}/{keyword}", "must be a number");
                    if (!v.TryGetDecimal(out var d) || Math.Abs(d) >= limit)
                    {
                        if (v.GetDouble() < 0 == lower) continue; // beyond what can be written anyway: no bound on this side
                        throw new JsonSchemaException($"{at}/{keyword}", $"bounds beyond ±{limit:0} are not supported by gpud's structured outputs");
                    }
                    // Of two bounds on one side, the tighter holds.
                    var tighter = found.Value is not { } current || (lower ? d > current || d == current && isExclusive : d < current || d == current && isExclusive);
                    if (tighter) found = (d, isExclusive);
                }
                return found;
            }
            var (min, minExclusive) = Bound("minimum", "exclusiveMinimum", lower: true);
            var (max, maxExclusive) = Bound("maximum", "exclusiveMaximum", lower: false);
            var step = Step(schema, at, integer);
            if (min is null && max is null && step is null) return null;
            if (integer)
            {
                (min, minExclusive) = (min is { } lo ? (minExclusive ? decimal.Floor(lo) + 1 : decimal.Ceiling(lo)) : null, false);
                (max, maxExclusive) = (max is { } hi ? (maxExclusive ? decimal.Ceiling(hi) - 1 : decimal.Floor(hi)) : null, false);
            }
            if (min is { } a && max is { } b && (a > b || a == b && (minExclusive || maxExclusive)))
                throw new JsonSchemaException(at, $"no {(integer ? "integer" : "number")} lies between its minimum and maximum");
            var bounds = new NumberBounds(min, minExclusive, max, maxExclusive, step);
            if (!bounds.IsSatisfiable)
                throw new JsonSchemaException(at, $"no multiple of {schema.GetProperty("multipleOf").GetRawText()} lies between its minimum and maximum");
            return bounds;
        }

        /// <summary>
        /// multipleOf as the step between allowed values; for integers the smallest whole multiple of it (0.5 → 1,
        /// 1.5 → 3), since only those are integers.
        /// </summary>
        private static decimal? Step(JsonElement schema, string at, bool integer)
        {
            if (!schema.TryGetProperty("multipleOf", out var v)) return null;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetDecimal(out var step) || step <= 0)
                throw new JsonSchemaException(at + "/multipleOf", "must be a number greater than 0");
            step /= 1.000000000000000000000000000m; // drop trailing zeros: 2.50 and 2.5 are one step
            if (step.Scale > NumberBounds.MaxStepDigits || step >= 1e15m)
                throw new JsonSchemaException(at + "/multipleOf", $"gpud enforces steps of at most {NumberBounds.MaxStepDigits} decimals, below 1e15");
            if (!integer) return step;
            // step = p / 10^q in lowest terms is p/g over 10^q/g (g = gcd(p, 10^q)): its whole multiples are those of p/g.
            var scale = NumberBounds.Pow10(step.Scale);
            var p = step * scale;
            var g = Gcd(p, scale);
            return p / g;
        }

        private static decimal Gcd(decimal a, decimal b)
        {
            while (b != 0) (a, b) = (b, a % b);
            return a;
        }

        private RefNode Reference(string pointer, string at)
        {
            if (_refs.TryGetValue(pointer, out var known)) return known;
            if (pointer != "#" && !pointer.StartsWith("#/", StringComparison.Ordinal))
                throw new JsonSchemaException(at + "/$ref", $"'{pointer}' is not a reference within the schema ('#', '#/$defs/…'); gpud fetches no other documents");
            var node = new RefNode(pointer);
            _refs[pointer] = node; // before compiling the target, which may refer back to it
            node.Target = Compile(Target(pointer, at), pointer);
            return node;
        }

        private JsonElement Target(string pointer, string at)
        {
            var target = document;
            foreach (var token in pointer.Length <= 2 ? [] : pointer[2..].Split('/'))
            {
                var name = Uri.UnescapeDataString(token).Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
                if (target.ValueKind == JsonValueKind.Object && target.TryGetProperty(name, out var child)) target = child;
                else if (target.ValueKind == JsonValueKind.Array && int.TryParse(name, out var i) && i >= 0 && i < target.GetArrayLength()) target = target[i];
                else throw new JsonSchemaException(at + "/$ref", $"'{pointer}' points at nothing in the schema");
            }
            return target;
        }

        /// <summary>
        /// No value can match both schemas, as far as their types, literals or a required property with literal values
        /// (a discriminated union's tag) show; false when that cannot be told.
        /// </summary>
        private bool Exclusive(JsonElement a, JsonElement b, string at)
        {
            (a, b) = (Unwrap(a, at), Unwrap(b, at));
            if (TypesOf(a, at) is { } ta && TypesOf(b, at) is { } tb && !ta.Overlaps(tb)) return true;
            if (Literals(a) is { } la && Literals(b) is { } lb && !la.Any(x => lb.Any(y => JsonElement.DeepEquals(x, y)))) return true;
            if (a.ValueKind != JsonValueKind.Object || b.ValueKind != JsonValueKind.Object
                || !a.TryGetProperty("properties", out var pa) || !b.TryGetProperty("properties", out var pb) || pa.ValueKind != JsonValueKind.Object || pb.ValueKind != JsonValueKind.Object)
                return false;
            static bool Requires(JsonElement schema, string name) =>
                schema.TryGetProperty("required", out var r) && r.ValueKind == JsonValueKind.Array && r.EnumerateArray().Any(n => n.ValueKind == JsonValueKind.String && n.GetString() == name);
            foreach (var property in pa.EnumerateObject())
            {
                if (!Requires(a, property.Name) || !Requires(b, property.Name) || !pb.TryGetProperty(property.Name, out var other)) continue;
                if (Literals(Unwrap(property.Value, at)) is { } x && Literals(Unwrap(other, at)) is { } y && !x.Any(v => y.Any(w => JsonElement.DeepEquals(v, w))))
                    return true;
            }
            return false;
        }

        /// <summary>Through <c>$ref</c> and one-schema <c>allOf</c> to the schema that says something.</summary>
        private JsonElement Unwrap(JsonElement schema, string at)
        {
            for (var depth = 0; depth < 64 && schema.ValueKind == JsonValueKind.Object; depth++)
            {
                if (schema.TryGetProperty("$ref", out var r) && r.ValueKind == JsonValueKind.String) schema = Target(r.GetString()!, at);
                else if (schema.TryGetProperty("allOf", out var all) && all.ValueKind == JsonValueKind.Array && all.GetArrayLength() == 1) schema = all[0];
                else break;
            }
            return schema;
        }

        /// <summary>The JSON types a schema admits (integer counted as number), or null when any type may be.</summary>
        private HashSet<string>? TypesOf(JsonElement schema, string at)
        {
            if (schema.ValueKind != JsonValueKind.Object) return null;
            if (schema.TryGetProperty("type", out var type))
            {
                var names = type.ValueKind == JsonValueKind.Array ? [.. type.EnumerateArray()] : new[] { type };
                if (names.Any(n => n.ValueKind != JsonValueKind.String)) return null; // refused when the branch is compiled
                return names.Select(n => n.GetString() == "integer" ? "number" : n.GetString()!).ToHashSet(StringComparer.Ordinal);
            }
            if (Literals(schema) is { } literals) return literals.Select(v => v.ValueKind switch
            {
                JsonValueKind.Object => "object", JsonValueKind.Array => "array", JsonValueKind.String => "string", JsonValueKind.Number => "number",
                JsonValueKind.Null => "null", _ => "boolean",
            }).ToHashSet(StringComparer.Ordinal);
            if (schema.TryGetProperty("anyOf", out var any) && any.ValueKind == JsonValueKind.Array)
            {
                var union = new HashSet<string>(StringComparer.Ordinal);
                foreach (var option in any.EnumerateArray())
                {
                    if (TypesOf(Unwrap(option, at), at) is not { } t) return null;
                    union.UnionWith(t);
                }
                return union;
            }
            return null;
        }

        private static List<JsonElement>? Literals(JsonElement schema) =>
            schema.ValueKind != JsonValueKind.Object ? null
            : schema.TryGetProperty("const", out var c) ? [c]
            : schema.TryGetProperty("enum", out var e) && e.ValueKind == JsonValueKind.Array ? [.. e.EnumerateArray()]
            : null;

        /// <summary>Any JSON value (a schema of true or {}): one node, referring to itself through objects and arrays.</summary>
        private ChoiceNode Any()
        {
            if (_any is not null) return _any;
            _any = new ChoiceNode();
            var anyObject = new ObjectNode(_string) { Values = _any, DepthLimited = true };
            _any.Alternatives = [anyObject, new ArrayNode(_any, 0, null) { DepthLimited = true }, _string, new NumberNode(integer: false), Literal([JsonTrue, JsonFalse, JsonNull])];
            return _any;
        }
    }

    private static readonly JsonSerializerOptions Compact = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly JsonElement JsonTrue = JsonElement.Parse("true");
    private static readonly JsonElement JsonFalse = JsonElement.Parse("false");
    private static readonly JsonElement JsonNull = JsonElement.Parse("null");

    private static LiteralNode Literal(IEnumerable<JsonElement> values) =>
        new([.. values.Select(v => JsonSerializer.SerializeToUtf8Bytes(v, Compact)).DistinctBy(Convert.ToBase64String)]);

    private static byte[] Key(string name) => JsonSerializer.SerializeToUtf8Bytes(name, Compact);

    private static string Escape(string name) => name.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal);

    private static IEnumerable<SchemaNode> Children(SchemaNode node) => node switch
    {
        ObjectNode o => o.Properties.Select(p => p.Value).Concat(o.Values is null ? [] : [o.Values]),
        ArrayNode a => [.. a.Prefix, a.Items],
        ChoiceNode c => c.Alternatives,
        RefNode r => [r.Target!],
        _ => [],
    };

    private static List<SchemaNode> Reachable(SchemaNode start)
    {
        var seen = new HashSet<SchemaNode>(ReferenceEqualityComparer.Instance) { start };
        var order = new List<SchemaNode> { start };
        for (var i = 0; i < order.Count; i++)
        {
            foreach (var child in Children(order[i]))
            {
                if (seen.Add(child)) order.Add(child);
            }
        }
        return order;
    }

    /// <summary>A reference that comes back to itself through references and anyOf alone would never read a byte.</summary>
    private static void CheckReferenceCycles(List<SchemaNode> nodes)
    {
        var done = new HashSet<SchemaNode>(ReferenceEqualityComparer.Instance);
        var open = new HashSet<SchemaNode>(ReferenceEqualityComparer.Instance);
        void Visit(SchemaNode node)
        {
            if (node is not (RefNode or ChoiceNode) || done.Contains(node)) return;
            if (!open.Add(node))
                throw new JsonSchemaException(node is RefNode r ? r.Pointer : "#", "a '$ref' leads back to itself before any value is read");
            foreach (var child in Children(node)) Visit(child);
            open.Remove(node);
            done.Add(node);
        }
        foreach (var node in nodes) Visit(node);
    }

    /// <summary>The nodes some finite JSON text satisfies (a least fixed point: leaves first, then what they complete).</summary>
    private static HashSet<SchemaNode> Satisfiable(List<SchemaNode> nodes)
    {
        var yes = new HashSet<SchemaNode>(ReferenceEqualityComparer.Instance);
        for (var changed = true; changed;)
        {
            changed = false;
            foreach (var node in nodes)
            {
                if (yes.Contains(node)) continue;
                var can = node switch
                {
                    ObjectNode o => o.Properties.Where(p => p.Required).All(p => yes.Contains(p.Value)),
                    ArrayNode a => Enumerable.Range(0, Math.Min(a.MinItems, a.Prefix.Length + 1)).All(i => yes.Contains(a.ItemAt(i))),
                    ChoiceNode c => c.Alternatives.Any(yes.Contains),
                    RefNode r => yes.Contains(r.Target!),
                    _ => true,
                };
                if (can) changed = yes.Add(node);
            }
        }
        return yes;
    }

    /// <summary>Removes the readings no finite value completes, so that decoding never walks into a dead end.</summary>
    private static void Prune(List<SchemaNode> nodes, HashSet<SchemaNode> satisfiable)
    {
        foreach (var node in nodes)
        {
            switch (node)
            {
                case ChoiceNode c:
                    c.Alternatives = [.. c.Alternatives.Where(satisfiable.Contains)];
                    break;
                case ObjectNode { IsFree: false } o when o.Properties.Any(p => !satisfiable.Contains(p.Value)):
                    o.SetProperties([.. o.Properties.Where(p => p.Required || satisfiable.Contains(p.Value))]);
                    break;
                case ObjectNode { IsFree: true, Values: { } values } o when !satisfiable.Contains(values):
                    o.Values = null;
                    break;
                case ArrayNode a:
                    // Items stop before the first position whose schema no value satisfies.
                    var stop = Enumerable.Range(0, a.Prefix.Length + 1).Where(i => !satisfiable.Contains(a.ItemAt(i))).Select(i => (int?)i).FirstOrDefault();
                    if (stop is { } at && (a.MaxItems is not { } most || most > at)) a.MaxItems = at;
                    break;
            }
        }
    }

    private static IEnumerable<SchemaNode> Concrete(SchemaNode node) => node switch
    {
        RefNode r => Concrete(r.Target!),
        ChoiceNode c => c.Alternatives.SelectMany(Concrete),
        _ => [node],
    };
}

/// <summary>A schema gpud cannot compile: invalid, using an unsupported keyword, or admitting no value.</summary>
/// <param name="location">A JSON pointer into the schema ('#' is its root).</param>
/// <param name="reason">What is wrong there.</param>
/// <param name="tool">For <see cref="JsonSchema.ToolCalls"/>: the index of the tool whose parameters are wrong.</param>
public sealed class JsonSchemaException(string location, string reason, int? tool = null) : Exception($"In context '{location}': {reason}.")
{
    public string Location { get; } = location;

    public string Reason { get; } = reason;

    public int? Tool { get; } = tool;
}
