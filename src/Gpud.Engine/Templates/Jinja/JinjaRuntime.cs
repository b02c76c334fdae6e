using Gpud.Engine.Templates;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Gpud.Engine.Templates.Jinja;

/// <summary>Jinja's <c>Undefined</c>: a missing variable or attribute. Falsy, renders as nothing.</summary>
internal sealed class Undefined
{
    public static readonly Undefined Instance = new();

    private Undefined()
    {
    }
}

/// <summary>The object <c>namespace()</c> makes: the one thing a template may mutate across loop iterations.</summary>
internal sealed class Namespace : Dictionary<string, object?>
{
    public Namespace() : base(StringComparer.Ordinal)
    {
    }
}

/// <summary>A callable value: built-in functions, bound string/dict methods and macros.</summary>
internal delegate object? JinjaCallable(IReadOnlyList<object?> positional, IReadOnlyDictionary<string, object?> named);

/// <summary>
/// Evaluates parsed templates with Python/Jinja semantics for the values chat templates handle: strings, numbers,
/// booleans, None, lists and dicts (messages as JSON), plus <c>namespace()</c>, loops and macros.
/// </summary>
internal sealed class JinjaRuntime
{
    private readonly StringBuilder _output = new();

    private sealed class Scope(Scope? parent)
    {
        private readonly Dictionary<string, object?> _values = new(StringComparer.Ordinal);

        public Scope? Parent { get; } = parent;

        public bool TryGet(string name, out object? value)
        {
            for (var scope = this; scope is not null; scope = scope.Parent)
            {
                if (scope._values.TryGetValue(name, out value)) return true;
            }
            value = null;
            return false;
        }

        public void Set(string name, object? value) => _values[name] = value;
    }

    private sealed class LoopSignal(bool isBreak) : Exception
    {
        public bool IsBreak { get; } = isBreak;
    }

    public static string Render(IReadOnlyList<Node> template, IReadOnlyDictionary<string, object?> context)
    {
        var runtime = new JinjaRuntime();
        var globals = new Scope(null);
        globals.Set("namespace", (JinjaCallable)((_, named) =>
        {
            var ns = new Namespace();
            foreach (var (key, value) in named) ns[key] = value;
            return ns;
        }));
        globals.Set("raise_exception", (JinjaCallable)((args, _) => throw new TemplateRenderException(Str(args.Count > 0 ? args[0] : "error"))));
        globals.Set("range", (JinjaCallable)((args, _) =>
        {
            var (start, stop, step) = args.Count switch
            {
                1 => (0L, ToLong(args[0]), 1L),
                2 => (ToLong(args[0]), ToLong(args[1]), 1L),
                _ => (ToLong(args[0]), ToLong(args[1]), ToLong(args[2])),
            };
            var list = new List<object?>();
            for (var i = start; step > 0 ? i < stop : i > stop; i += step) list.Add(i);
            return list;
        }));
        globals.Set("strftime_now", (JinjaCallable)((args, _) => StrftimeNow(Str(args[0]))));
        var root = new Scope(globals);
        foreach (var (key, value) in context) root.Set(key, value);
        runtime.RenderNodes(template, root);
        return runtime._output.ToString();
    }

    /// <summary>Converts JSON (request messages, tools) into template values.</summary>
    public static object? FromJson(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => element.EnumerateObject().Aggregate(new Dictionary<string, object?>(StringComparer.Ordinal), (d, p) =>
        {
            d[p.Name] = FromJson(p.Value);
            return d;
        }),
        JsonValueKind.Array => element.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.String => element.GetString(),
        JsonValueKind.Number => element.TryGetInt64(out var l) ? l : element.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        _ => null,
    };

    private void RenderNodes(IReadOnlyList<Node> nodes, Scope scope)
    {
        foreach (var node in nodes) RenderNode(node, scope);
    }

    private void RenderNode(Node node, Scope scope)
    {
        switch (node)
        {
            case TextNode text:
                _output.Append(text.Text);
                break;
            case OutputNode output:
                _output.Append(Str(Eval(output.Value, scope)));
                break;
            case IfNode conditional:
                foreach (var (condition, body) in conditional.Branches)
                {
                    if (Truthy(Eval(condition, scope)))
                    {
                        RenderNodes(body, scope);
                        return;
                    }
                }
                if (conditional.Else is not null) RenderNodes(conditional.Else, scope);
                break;
            case ForNode loop:
                RenderFor(loop, scope);
                break;
            case SetNode set:
                var value = set.Value is not null ? Eval(set.Value, scope) : Capture(set.Body!, scope);
                if (set.Attribute is null)
                {
                    scope.Set(set.Name, value);
                }
                else if (scope.TryGet(set.Name, out var target) && target is Namespace ns)
                {
                    ns[set.Attribute] = value;
                }
                else
                {
                    throw new TemplateRenderException($"Cannot assign to '{set.Name}.{set.Attribute}': '{set.Name}' is not a namespace.");
                }
                break;
            case MacroNode macro:
                scope.Set(macro.Name, (JinjaCallable)((args, named) =>
                {
                    var local = new Scope(scope);
                    for (var i = 0; i < macro.Parameters.Count; i++)
                    {
                        var (name, fallback) = macro.Parameters[i];
                        local.Set(name, i < args.Count ? args[i] : named.TryGetValue(name, out var v) ? v : fallback is null ? Undefined.Instance : Eval(fallback, scope));
                    }
                    return Capture(macro.Body, local);
                }));
                break;
            case LoopControlNode control:
                throw new LoopSignal(control.IsBreak);
        }
    }

    private string Capture(IReadOnlyList<Node> body, Scope scope)
    {
        var start = _output.Length;
        RenderNodes(body, scope);
        var text = _output.ToString(start, _output.Length - start);
        _output.Length = start;
        return text;
    }

    private void RenderFor(ForNode loop, Scope scope)
    {
        var items = Iterate(Eval(loop.Iterable, scope)).ToList();
        if (loop.Filter is not null)
        {
            items = items.Where(item =>
            {
                var probe = new Scope(scope);
                Bind(probe, loop.Targets, item);
                return Truthy(Eval(loop.Filter, probe));
            }).ToList();
        }
        if (items.Count == 0)
        {
            if (loop.Else is not null) RenderNodes(loop.Else, scope);
            return;
        }
        for (var i = 0; i < items.Count; i++)
        {
            var iteration = new Scope(scope);
            Bind(iteration, loop.Targets, items[i]);
            iteration.Set("loop", new Dictionary<string, object?>(StringComparer.Ordinal)
            {
                ["index0"] = (long)i,
                ["index"] = (long)i + 1,
                ["revindex0"] = (long)(items.Count - i - 1),
                ["revindex"] = (long)(items.Count - i),
                ["first"] = i == 0,
                ["last"] = i == items.Count - 1,
                ["length"] = (long)items.Count,
                ["previtem"] = i > 0 ? items[i - 1] : Undefined.Instance,
                ["nextitem"] = i + 1 < items.Count ? items[i + 1] : Undefined.Instance,
            });
            try
            {
                RenderNodes(loop.Body, iteration);
            }
            catch (LoopSignal signal)
            {
                if (signal.IsBreak) break;
            }
        }
    }

    private static void Bind(Scope scope, IReadOnlyList<string> targets, object? item)
    {
        if (targets.Count == 1)
        {
            scope.Set(targets[0], item);
            return;
        }
        var parts = item as List<object?> ?? throw new TemplateRenderException($"Cannot unpack {TypeName(item)} into {targets.Count} names.");
        for (var i = 0; i < targets.Count; i++) scope.Set(targets[i], i < parts.Count ? parts[i] : Undefined.Instance);
    }

    private object? Eval(Expr expr, Scope scope)
    {
        switch (expr)
        {
            case Literal literal:
                return literal.Value;
            case NameExpr name:
                return scope.TryGet(name.Name, out var value) ? value : Undefined.Instance;
            case ListExpr list:
                return list.Items.Select(i => Eval(i, scope)).ToList();
            case DictExpr dict:
                var map = new Dictionary<string, object?>(StringComparer.Ordinal);
                foreach (var (key, item) in dict.Items) map[Str(Eval(key, scope))] = Eval(item, scope);
                return map;
            case AttributeExpr attribute:
                return GetAttribute(Eval(attribute.Target, scope), attribute.Name);
            case IndexExpr index:
                return GetItem(Eval(index.Target, scope), Eval(index.Index, scope));
            case SliceExpr slice:
                return Slice(Eval(slice.Target, scope), slice.Start is null ? null : Eval(slice.Start, scope),
                    slice.Stop is null ? null : Eval(slice.Stop, scope), slice.Step is null ? null : Eval(slice.Step, scope));
            case CallExpr call:
                var callee = Eval(call.Target, scope);
                if (callee is not JinjaCallable function)
                    throw new TemplateRenderException($"{Describe(call.Target)} is not callable.");
                return function(call.Arguments.Select(a => Eval(a, scope)).ToList(),
                    call.Named.ToDictionary(n => n.Name, n => Eval(n.Value, scope), StringComparer.Ordinal));
            case FilterExpr filter:
                return JinjaFilters.Apply(filter.Name, Eval(filter.Target, scope), filter.Arguments.Select(a => Eval(a, scope)).ToList(),
                    filter.Named.ToDictionary(n => n.Name, n => Eval(n.Value, scope), StringComparer.Ordinal));
            case TestExpr test:
                var result = JinjaFilters.Test(test.Name, Eval(test.Target, scope), test.Arguments.Select(a => Eval(a, scope)).ToList());
                return test.Negated ? !result : result;
            case UnaryExpr unary:
                var operand = Eval(unary.Operand, scope);
                return unary.Operator switch
                {
                    "not" => !Truthy(operand),
                    "-" => operand is double d ? (object)(-d) : -ToLong(operand),
                    _ => operand,
                };
            case BinaryExpr binary:
                return EvalBinary(binary, scope);
            case ConditionalExpr conditional:
                return Truthy(Eval(conditional.Condition, scope))
                    ? Eval(conditional.Then, scope)
                    : conditional.Else is null ? Undefined.Instance : Eval(conditional.Else, scope);
            default:
                throw new TemplateRenderException($"Unsupported expression {expr.GetType().Name}.");
        }
    }

    private object? EvalBinary(BinaryExpr binary, Scope scope)
    {
        var left = Eval(binary.Left, scope);
        switch (binary.Operator)
        {
            case "and": return Truthy(left) ? Eval(binary.Right, scope) : left;
            case "or": return Truthy(left) ? left : Eval(binary.Right, scope);
        }
        var right = Eval(binary.Right, scope);
        switch (binary.Operator)
        {
            case "==": return AreEqual(left, right);
            case "!=": return !AreEqual(left, right);
            case "<": return Compare(left, right) < 0;
            case ">": return Compare(left, right) > 0;
            case "<=": return Compare(left, right) <= 0;
            case ">=": return Compare(left, right) >= 0;
            case "in":
                return right switch
                {
                    string s => s.Contains(Str(left), StringComparison.Ordinal),
                    List<object?> l => l.Any(item => AreEqual(item, left)),
                    Dictionary<string, object?> d => left is string key && d.ContainsKey(key),
                    _ => false,
                };
            case "~": return Str(left) + Str(right);
            case "+":
                if (left is string || right is string)
                {
                    if (left is string a && right is string b) return a + b;
                    throw new TemplateRenderException($"Cannot add {TypeName(left)} and {TypeName(right)}.");
                }
                if (left is List<object?> la && right is List<object?> lb) return la.Concat(lb).ToList();
                return Arithmetic(left, right, (x, y) => x + y, (x, y) => x + y);
            case "-": return Arithmetic(left, right, (x, y) => x - y, (x, y) => x - y);
            case "*":
                if (left is string text && right is long times) return string.Concat(Enumerable.Repeat(text, (int)Math.Max(0, times)));
                return Arithmetic(left, right, (x, y) => x * y, (x, y) => x * y);
            case "/": return ToDouble(left) / ToDouble(right);
            case "//": return (long)Math.Floor(ToDouble(left) / ToDouble(right));
            case "%": return Arithmetic(left, right, (x, y) => ((x % y) + y) % y, (x, y) => x % y);
            default: throw new TemplateRenderException($"Unsupported operator '{binary.Operator}'.");
        }
    }

    private static object Arithmetic(object? left, object? right, Func<long, long, long> integer, Func<double, double, double> real) =>
        left is double || right is double ? (object)real(ToDouble(left), ToDouble(right)) : integer(ToLong(left), ToLong(right));

    internal static object? GetAttribute(object? target, string name)
    {
        switch (target)
        {
            case Dictionary<string, object?> map:
                if (map.TryGetValue(name, out var value)) return value;
                return target is Namespace ? Undefined.Instance : (object?)JinjaFilters.DictMethod(map, name) ?? Undefined.Instance;
            case string text:
                return (object?)JinjaFilters.StringMethod(text, name) ?? Undefined.Instance;
            case List<object?> list when name == "append":
                return (JinjaCallable)((args, _) =>
                {
                    list.Add(args[0]);
                    return null;
                });
            default:
                return Undefined.Instance;
        }
    }

    internal static object? GetItem(object? target, object? index)
    {
        switch (target)
        {
            case List<object?> list when index is long i:
                var at = i < 0 ? list.Count + i : i;
                return at >= 0 && at < list.Count ? list[(int)at] : Undefined.Instance;
            case string text when index is long i:
                var c = i < 0 ? text.Length + i : i;
                return c >= 0 && c < text.Length ? text[(int)c].ToString() : Undefined.Instance;
            case Dictionary<string, object?> map when index is string key:
                return map.TryGetValue(key, out var value) ? value : Undefined.Instance;
            case Dictionary<string, object?> map:
                return GetAttribute(map, Str(index));
            default:
                return Undefined.Instance;
        }
    }

    private static object Slice(object? target, object? start, object? stop, object? step)
    {
        var items = target switch
        {
            List<object?> list => list,
            string text => text.Select(c => (object?)c.ToString()).ToList(),
            _ => throw new TemplateRenderException($"Cannot slice {TypeName(target)}."),
        };
        var n = items.Count;
        var s = step is null or Undefined ? 1 : ToLong(step);
        if (s == 0) throw new TemplateRenderException("Slice step cannot be zero.");
        long Clamp(object? value, long fallback)
        {
            if (value is null or Undefined) return fallback;
            var v = ToLong(value);
            if (v < 0) v += n;
            return s > 0 ? Math.Clamp(v, 0, n) : Math.Clamp(v, -1, n - 1);
        }
        var from = Clamp(start, s > 0 ? 0 : n - 1);
        var to = Clamp(stop, s > 0 ? n : -1);
        var result = new List<object?>();
        for (var i = from; s > 0 ? i < to : i > to; i += s) result.Add(items[(int)i]);
        return target is string ? string.Concat(result.Cast<string>()) : result;
    }

    internal static bool Truthy(object? value) => value switch
    {
        null or Undefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        Namespace => true,
        Dictionary<string, object?> d => d.Count > 0,
        _ => true,
    };

    internal static bool AreEqual(object? left, object? right) => (left, right) switch
    {
        (null, null) => true,
        (Undefined, Undefined) => true,
        (long a, long b) => a == b,
        (long or double, long or double) => ToDouble(left) == ToDouble(right),
        (bool a, bool b) => a == b,
        (string a, string b) => a == b,
        (List<object?> a, List<object?> b) => a.Count == b.Count && a.Zip(b).All(p => AreEqual(p.First, p.Second)),
        _ => ReferenceEquals(left, right),
    };

    private static int Compare(object? left, object? right) => (left, right) switch
    {
        (string a, string b) => string.CompareOrdinal(a, b),
        (long or double or bool, long or double or bool) => ToDouble(left).CompareTo(ToDouble(right)),
        _ => throw new TemplateRenderException($"Cannot compare {TypeName(left)} with {TypeName(right)}."),
    };

    internal static long ToLong(object? value) => value switch
    {
        long l => l,
        double d => (long)d,
        bool b => b ? 1 : 0,
        string s when long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed) => parsed,
        _ => throw new TemplateRenderException($"Expected a number, got {TypeName(value)}."),
    };

    internal static double ToDouble(object? value) => value switch
    {
        double d => d,
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new TemplateRenderException($"Expected a number, got {TypeName(value)}."),
    };

    /// <summary>How Jinja prints a value (Python's str()).</summary>
    internal static string Str(object? value) => value switch
    {
        null => "None",
        Undefined => "",
        string s => s,
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => PythonFloat(d),
        _ => Repr(value),
    };

    /// <summary>Python's repr(), for values printed inside lists and dicts.</summary>
    internal static string Repr(object? value) => value switch
    {
        string s => "'" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal) + "'",
        List<object?> l => "[" + string.Join(", ", l.Select(Repr)) + "]",
        Dictionary<string, object?> d => "{" + string.Join(", ", d.Select(p => $"{Repr(p.Key)}: {Repr(p.Value)}")) + "}",
        JinjaCallable => "<function>",
        _ => Str(value),
    };

    private static string PythonFloat(double d) =>
        double.IsInteger(d) && Math.Abs(d) < 1e16 ? d.ToString("0.0", CultureInfo.InvariantCulture) : d.ToString("R", CultureInfo.InvariantCulture);

    internal static string TypeName(object? value) => value switch
    {
        null => "None",
        Undefined => "undefined",
        string => "a string",
        long => "an integer",
        double => "a float",
        bool => "a boolean",
        List<object?> => "a list",
        Dictionary<string, object?> => "a dict",
        _ => value.GetType().Name,
    };

    private static IEnumerable<object?> Iterate(object? value) => value switch
    {
        List<object?> list => list,
        Dictionary<string, object?> map => map.Keys,
        string text => text.Select(c => (object?)c.ToString()),
        null or Undefined => [],
        _ => throw new TemplateRenderException($"Cannot iterate over {TypeName(value)}."),
    };

    private static string Describe(Expr expr) => expr switch
    {
        NameExpr n => $"'{n.Name}'",
        AttributeExpr a => $"'{a.Name}'",
        _ => "The expression",
    };

    private static string StrftimeNow(string format)
    {
        var now = DateTime.Now;
        var text = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length)
            {
                text.Append(format[i]);
                continue;
            }
            text.Append(format[++i] switch
            {
                'd' => now.ToString("dd", CultureInfo.InvariantCulture),
                'm' => now.ToString("MM", CultureInfo.InvariantCulture),
                'Y' => now.ToString("yyyy", CultureInfo.InvariantCulture),
                'y' => now.ToString("yy", CultureInfo.InvariantCulture),
                'b' => now.ToString("MMM", CultureInfo.InvariantCulture),
                'B' => now.ToString("MMMM", CultureInfo.InvariantCulture),
                'H' => now.ToString("HH", CultureInfo.InvariantCulture),
                'M' => now.ToString("mm", CultureInfo.InvariantCulture),
                'S' => now.ToString("ss", CultureInfo.InvariantCulture),
                '%' => "%",
                var other => "%" + other,
            });
        }
        return text.ToString();
    }
}
