namespace Gpud.Engine.Generation.Constraints;

/// <summary>
/// Where a byte-by-byte reader of one instance of a compiled <see cref="JsonSchema"/> stands. The reader is a
/// pushdown automaton run nondeterministically: each thread is a stack of immutable <see cref="SchemaFrame"/>s (the
/// value being read on top, its containers below), and a byte that fits several readings (an <c>anyOf</c>, optional
/// properties with a shared prefix, enum values) keeps one thread per reading until the text tells them apart. Frames
/// are shared between threads and between states, so a step allocates only what changes (nothing inside a string or a
/// run of digits). Whitespace between tokens is capped at <see cref="JsonObjectGrammar.MaxWhitespace"/> bytes per gap
/// and one before the object, as in JSON mode.
/// </summary>
public struct JsonSchemaGrammar : IByteGrammar<JsonSchemaGrammar>
{
    /// <summary>Readings kept at once; past it the rest are dropped (the text stays valid, its choices narrower).</summary>
    public const int MaxThreads = 32;

    private SchemaFrame? _one;
    private SchemaFrame[]? _many;
    private int _hash;

    internal JsonSchemaGrammar(SchemaFrame start) => (_one, _hash) = (start, start.Hash);

    /// <summary>The root object has been closed: nothing more may follow.</summary>
    public readonly bool IsComplete => _one is { } one ? one.IsDone : (_many ?? []).Any(f => f.IsDone);

    public bool Advance(byte c)
    {
        // Most bytes of an answer are plain characters inside a string, which leave the state as it is.
        if (_one is { Node: StringNode { IsPlain: true }, Sub: 0, Index: 0 } && c is >= 0x20 and < 0x80 and not (byte)'"' and not (byte)'\\') return true;
        var into = new SchemaThreads();
        if (_one is { } one) SchemaFrame.Step(one, c, ref into);
        else
        {
            foreach (var thread in _many ?? []) SchemaFrame.Step(thread, c, ref into);
        }
        if (into.First is not { } first) return false;
        if (into.More is null)
        {
            (_one, _many, _hash) = (first, null, first.Hash);
            return true;
        }
        var distinct = new HashSet<SchemaFrame> { first };
        foreach (var frame in into.More)
        {
            if (distinct.Count == MaxThreads) break;
            distinct.Add(frame);
        }
        if (distinct.Count == 1)
        {
            (_one, _many, _hash) = (first, null, first.Hash);
            return true;
        }
        _many = [.. distinct];
        _one = null;
        _hash = 0;
        foreach (var frame in _many) _hash = unchecked(_hash + frame.Hash); // order-free: the threads are a set
        return true;
    }

    public readonly bool Equals(JsonSchemaGrammar other)
    {
        if (_hash != other._hash) return false;
        if (_one is not null || other._one is not null) return Equals(_one, other._one);
        var (mine, theirs) = (_many ?? [], other._many ?? []);
        return mine.Length == theirs.Length && mine.All(f => Array.IndexOf(theirs, f) >= 0);
    }

    public override readonly bool Equals(object? obj) => obj is JsonSchemaGrammar other && Equals(other);

    public override readonly int GetHashCode() => _hash;

    public static bool operator ==(JsonSchemaGrammar left, JsonSchemaGrammar right) => left.Equals(right);

    public static bool operator !=(JsonSchemaGrammar left, JsonSchemaGrammar right) => !left.Equals(right);
}

/// <summary>The threads one byte leads to; the first without allocating a list (the common, deterministic case).</summary>
internal ref struct SchemaThreads
{
    public SchemaFrame? First;
    public List<SchemaFrame>? More;

    public void AddIf(SchemaFrame? frame)
    {
        if (frame is not null) Add(frame);
    }

    public void Add(SchemaFrame frame)
    {
        if (First is null) First = frame;
        else (More ??= []).Add(frame);
    }
}

/// <summary>
/// One value being read: its schema node, a node-specific position, and the frame of its container (null for the
/// root). Immutable with structural equality, so equal states are recognised whichever path led to them.
/// </summary>
internal sealed class SchemaFrame : IEquatable<SchemaFrame>
{
    // Container phases (objects, arrays, the root).
    public const byte AfterOpen = 1, Key = 2, Colon = 3, BeforeValue = 4, InValue = 5, AfterValue = 6, AfterComma = 7, InKey = 8, Done = 9;

    public SchemaFrame(SchemaNode node, byte phase, int index, int sub, byte space, SchemaFrame? parent, string? text = null, PatternStates? matched = null)
    {
        (Node, Phase, Index, Sub, Space, Parent, Text, Matched) = (node, phase, index, sub, space, parent, text, matched);
        Depth = parent is null ? 0 : parent.Depth + 1;
        Hash = HashCode.Combine(System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(node), phase, index, sub, space, parent?.Hash ?? 0, text, matched);
    }

    public SchemaNode Node { get; }

    /// <summary>Containers: where in the container (the constants above). Other values: unused.</summary>
    public byte Phase { get; }

    /// <summary>Objects: the property being read or next. Arrays: items read (capped where it matters). Literals: which value. Strings: UTF-8 bytes owed and the lead byte.</summary>
    public int Index { get; }

    /// <summary>Property keys and literals: bytes matched. Strings: escape state. Numbers: <see cref="NumberState"/>.</summary>
    public int Sub { get; }

    /// <summary>Whitespace bytes read in the current gap.</summary>
    public byte Space { get; }

    public SchemaFrame? Parent { get; }

    /// <summary>Bounded numbers: the number so far, whose every continuation is checked against the bounds.</summary>
    public string? Text { get; }

    /// <summary>Strings with a pattern: where its automaton stands.</summary>
    public PatternStates? Matched { get; }

    public int Depth { get; }

    public int Hash { get; }

    public bool IsDone => Node is RootNode && Phase == Done;

    private SchemaFrame With(byte phase, int index = 0, int sub = 0, byte space = 0) => new(Node, phase, index, sub, space, Parent);

    public static void Step(SchemaFrame f, byte c, ref SchemaThreads into)
    {
        switch (f.Node)
        {
            case RootNode root:
                if (f.Phase == Done) return;
                if (IsSpace(c))
                {
                    if (f.Space == 0) into.Add(f.With(f.Phase, space: 1));
                    return;
                }
                Begin(root.Value, f.With(InValue), c, ref into);
                return;
            case ObjectNode o:
                StepObject(o, f, c, ref into);
                return;
            case ArrayNode a:
                StepArray(a, f, c, ref into);
                return;
            case StringNode text:
                StepString(text, f, c, ref into);
                return;
            case NumberNode n:
                StepNumber(n, f, c, ref into);
                return;
            case LiteralNode l:
                var value = l.Values[f.Index];
                if (value[f.Sub] != c) return;
                into.Add(f.Sub + 1 == value.Length ? Resume(f.Parent!) : f.With(0, f.Index, f.Sub + 1));
                return;
        }
    }

    /// <summary>Starts a value of <paramref name="node"/> at its first byte (never whitespace: containers read that).</summary>
    private static void Begin(SchemaNode node, SchemaFrame parent, byte c, ref SchemaThreads into)
    {
        switch (node)
        {
            case RefNode reference:
                Begin(reference.Target!, parent, c, ref into);
                return;
            case ChoiceNode choice:
                foreach (var alternative in choice.Alternatives) Begin(alternative, parent, c, ref into);
                return;
            case ObjectNode or ArrayNode when c == (node is ObjectNode ? '{' : '[')
                                              && (node is ObjectNode { DepthLimited: false } or ArrayNode { DepthLimited: false } || parent.Depth < JsonSchema.MaxDepth):
                into.Add(new SchemaFrame(node, AfterOpen, 0, 0, 0, parent));
                return;
            case StringNode text when c == '"':
                into.Add(new SchemaFrame(node, 0, 0, 0, 0, parent, matched: text.Pattern?.Start));
                return;
            case NumberNode number:
                if (JsonLexis.NumberStart(c) is not { } state) return;
                if (number.Bounds is not { } bounds) into.Add(new SchemaFrame(node, 0, 0, (int)state, 0, parent));
                else if (bounds.Reachable(((char)c).ToString(), number.Integer)) into.Add(new SchemaFrame(node, 0, 0, (int)state, 0, parent, ((char)c).ToString()));
                return;
            case LiteralNode literal:
                for (var i = 0; i < literal.Values.Length; i++)
                {
                    if (literal.Values[i][0] != c) continue;
                    into.Add(literal.Values[i].Length == 1 ? Resume(parent) : new SchemaFrame(node, 0, i, 1, 0, parent));
                }
                return;
        }
    }

    /// <summary>The container once the value it was waiting for has been read.</summary>
    private static SchemaFrame Resume(SchemaFrame parent) => parent.Node switch
    {
        RootNode => parent.With(Done),
        ObjectNode when parent.Phase == InKey => parent.With(Colon),
        ObjectNode o => parent.With(AfterValue, o.IsFree ? 0 : parent.Index + 1),
        ArrayNode a => parent.With(AfterValue, Math.Min(parent.Index + 1, a.CountCap)),
        _ => throw new InvalidOperationException($"A {parent.Node.GetType().Name} holds no values."),
    };

    private static void StepObject(ObjectNode o, SchemaFrame f, byte c, ref SchemaThreads into)
    {
        if (f.Phase == Key) // inside a declared key (which may hold spaces)
        {
            var key = o.Properties[f.Index].Key;
            if (key[f.Sub] == c) into.Add(f.Sub + 1 == key.Length ? f.With(Colon, f.Index) : f.With(Key, f.Index, f.Sub + 1));
            return;
        }
        if (IsSpace(c))
        {
            if (f.Space < JsonObjectGrammar.MaxWhitespace) into.Add(f.With(f.Phase, f.Index, f.Sub, (byte)(f.Space + 1)));
            return;
        }
        switch (f.Phase)
        {
            case AfterOpen or AfterValue when c == '}':
                if (!o.RequiresFrom(f.Phase == AfterOpen ? 0 : f.Index)) into.Add(Resume(f.Parent!));
                return;
            case AfterValue when c == ',':
                if (o.MoreFrom(f.Index)) into.Add(f.With(AfterComma, f.Index));
                return;
            case AfterOpen or AfterComma when c == '"':
                if (o.IsFree)
                {
                    if (o.Values is not null) into.Add(new SchemaFrame(o.KeyString, 0, 0, 0, 0, f.With(InKey)));
                    return;
                }
                for (var j = f.Index; j < o.Properties.Length; j++)
                {
                    into.Add(f.With(Key, j, 1)); // the key's opening quote is read
                    if (o.Properties[j].Required) break; // a required property cannot be skipped
                }
                return;
            case Colon when c == ':':
                into.Add(f.With(BeforeValue, f.Index));
                return;
            case BeforeValue:
                Begin(o.IsFree ? o.Values! : o.Properties[f.Index].Value, f.With(InValue, f.Index), c, ref into);
                return;
        }
    }

    private static void StepArray(ArrayNode a, SchemaFrame f, byte c, ref SchemaThreads into)
    {
        if (IsSpace(c))
        {
            if (f.Space < JsonObjectGrammar.MaxWhitespace) into.Add(f.With(f.Phase, f.Index, f.Sub, (byte)(f.Space + 1)));
            return;
        }
        switch (f.Phase)
        {
            case AfterOpen when c == ']':
                if (a.MinItems == 0) into.Add(Resume(f.Parent!));
                return;
            case AfterValue when c == ']':
                if (f.Index >= a.MinItems) into.Add(Resume(f.Parent!));
                return;
            case AfterValue when c == ',':
                if (a.MaxItems is not { } max || f.Index < max) into.Add(f.With(AfterComma, f.Index));
                return;
            case AfterOpen or AfterComma:
                if (a.MaxItems != 0) Begin(a.ItemAt(f.Index), f.With(InValue, f.Index), c, ref into);
                return;
        }
    }

    /// <summary>
    /// Index: the UTF-8 character being read — its lead byte while the first continuation byte is owed (bits 0-7),
    /// continuation bytes owed (8-9) and, for a pattern, its code point so far (10+). Sub: escape state (bits 0-2:
    /// 0 none, 1 after '\', 2..5 hex digits left + 1) and, in a counted string, the characters so far (3+).
    /// </summary>
    private static void StepString(StringNode node, SchemaFrame f, byte c, ref SchemaThreads into)
    {
        var (lead, owed, partial) = (f.Index & 0xFF, f.Index >> 8 & 3, f.Index >> 10);
        var (escape, count) = (f.Sub & 7, f.Sub >> 3);
        var room = node.MaxLength is not { } max || count < max; // another character may start
        // Characters the pattern may still take after the next one, so that it can finish within maxLength, and must
        // still take to reach minLength.
        var budget = node.MaxLength is { } most ? most - count - 1 : StringPattern.Unreachable;
        var need = node.MinLength - count - 1;
        // The frame after this byte: inside a character (its escape or UTF-8 state), or after one (counted, matched).
        SchemaFrame Inside(int nextEscape, int nextIndex)
        {
            var sub = nextEscape | count << 3;
            return sub == f.Sub && nextIndex == f.Index ? f : new SchemaFrame(node, 0, nextIndex, sub, 0, f.Parent, matched: f.Matched);
        }
        SchemaFrame? After(int codePoint)
        {
            var matched = f.Matched;
            if (node.Pattern is { } pattern && ((matched = pattern.Step(f.Matched!, codePoint)) is null || !pattern.Viable(matched, budget, need)))
                return null;
            var sub = (node.CountCap > 0 ? Math.Min(count + 1, node.CountCap) : count) << 3;
            return sub == f.Sub && f.Index == 0 && Equals(matched, f.Matched) ? f : new SchemaFrame(node, 0, 0, sub, 0, f.Parent, matched: matched);
        }
        if (owed > 0)
        {
            if (!JsonLexis.IsContinuation(c, lead)) return;
            var codePoint = node.Pattern is null ? 0 : partial << 6 | c & 0x3F;
            if (owed > 1 && node.Pattern is { } open && !open.CanStep(f.Matched!, codePoint << 6 * (owed - 1), (codePoint + 1 << 6 * (owed - 1)) - 1, budget, need)) return;
            into.AddIf(owed == 1 ? After(codePoint) : Inside(0, codePoint << 10 | (owed - 1) << 8));
            return;
        }
        switch (escape)
        {
            case 0 when c == '"':
                if (count >= node.MinLength && (node.Pattern is not { } pattern || pattern.Accepts(f.Matched!))) into.Add(Resume(f.Parent!));
                return;
            case 0 when !room:
                return;
            case 0 when c >= 0x80:
                var continuation = JsonLexis.Continuations(c);
                if (continuation == 0) return;
                var bits = c & (0x7F >> continuation + 1); // the lead byte's share of the code point
                if (node.Pattern is { } starting)
                {
                    // The characters this lead byte can begin, without the overlong forms and surrogates UTF-8 refuses.
                    var first = Math.Max(bits << 6 * continuation, continuation switch { 1 => 0x80, 2 => 0x800, _ => 0x10000 });
                    var last = Math.Min((bits + 1 << 6 * continuation) - 1, c == 0xED ? 0xD7FF : 0x10FFFF);
                    if (!starting.CanStep(f.Matched!, first, last, budget, need)) return;
                }
                into.AddIf(Inside(0, (node.Pattern is null ? 0 : bits << 10) | continuation << 8 | c));
                return;
            case 0 when c == '\\':
                if (node.Pattern is { } escaping && !"\"\\/\b\f\n\r\t".Any(e => escaping.CanStep(f.Matched!, e, e, budget, need))) return;
                into.AddIf(Inside(1, 0));
                return;
            case 0:
                if (c >= 0x20) into.AddIf(After(c)); // raw control characters must be escaped
                return;
            case 1 when c == 'u':
                if (node.IsPlain) into.AddIf(Inside(5, 0)); // four hex digits to go
                return;
            case 1:
                int? escaped = c switch
                {
                    (byte)'"' or (byte)'\\' or (byte)'/' => c,
                    (byte)'b' => '\b',
                    (byte)'f' => '\f',
                    (byte)'n' => '\n',
                    (byte)'r' => '\r',
                    (byte)'t' => '\t',
                    _ => null,
                };
                if (escaped is { } value) into.AddIf(After(value));
                return;
            default:
                if (!char.IsAsciiHexDigit((char)c)) return;
                if (escape == 2) into.AddIf(After(0)); // only plain strings take \u escapes: nothing counts or matches the character
                else into.AddIf(Inside(escape - 1, 0));
                return;
        }
    }

    private static void StepNumber(NumberNode n, SchemaFrame f, byte c, ref SchemaThreads into)
    {
        var at = (JsonLexis.NumberState)f.Sub;
        // Bounded numbers are written without exponent, so that their digits alone decide the value.
        if (JsonLexis.NumberNext(at, c, fraction: !n.Integer, exponent: !n.Integer && n.Bounds is null) is { } state)
        {
            if (n.Bounds is not { } bounds) into.Add(state == at ? f : f.With(0, 0, (int)state));
            else if (f.Text + (char)c is var text && bounds.Reachable(text, n.Integer)) into.Add(new SchemaFrame(n, 0, 0, (int)state, 0, f.Parent, text));
            return;
        }
        // The number ended before this byte, which belongs to its container.
        if (JsonLexis.IsWhole(at) && (n.Bounds is null || n.Bounds.Contains(f.Text!))) Step(Resume(f.Parent!), c, ref into);
    }

    private static bool IsSpace(byte c) => c is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t';

    /// <summary>Frame by frame down both stacks (a loop: a recursive schema's stack may be thousands deep).</summary>
    public bool Equals(SchemaFrame? other)
    {
        for (var mine = this; !ReferenceEquals(mine, other); (mine, other) = (mine.Parent, other.Parent))
        {
            if (mine is null || other is null || mine.Hash != other.Hash || !ReferenceEquals(mine.Node, other.Node) || mine.Phase != other.Phase
                || mine.Index != other.Index || mine.Sub != other.Sub || mine.Space != other.Space || mine.Text != other.Text
                || !Equals(mine.Matched, other.Matched))
                return false;
        }
        return true;
    }

    public override bool Equals(object? obj) => Equals(obj as SchemaFrame);

    public override int GetHashCode() => Hash;
}
