using System.Globalization;

namespace Gpud.Engine.Generation.Constraints;

/// <summary>
/// A JSON Schema <c>pattern</c> (an ECMAScript regular expression, matched as with the <c>u</c> flag: over code
/// points, anywhere in the string unless anchored) compiled to a Thompson NFA, run character by character as a string
/// is written. The subset: literals and escapes, <c>.</c>, classes (<c>[a-z]</c>, <c>[^…]</c>, <c>\d \w \s</c> and
/// their negations), groups (<c>(…)</c>, <c>(?:…)</c>, <c>(?&lt;name&gt;…)</c>), <c>|</c>, the quantifiers
/// <c>* + ? {n} {n,} {n,m}</c> (lazy or not: the language is the same), and <c>^</c>/<c>$</c> at the ends.
/// Lookaheads right after a leading <c>^</c> (<c>^(?=.{1,253}$)</c>, <c>^(?=.*\d)</c>, <c>^(?!^[-+.]*$)</c> as Pydantic
/// writes for decimals) are one more expression the string must match, or must not. Backreferences, other lookaround
/// and word boundaries are refused: no automaton reads them.
/// </summary>
internal sealed class StringPattern
{
    /// <summary>NFA states at most (counted quantifiers copy their operand): a larger pattern is refused.</summary>
    public const int MaxStates = 2048;

    private readonly List<(int Lo, int Hi)[]?> _sets = []; // per state: the characters that move it on, or null (ε only)
    private readonly List<bool> _negated = [];
    private readonly List<int> _next = [];
    private readonly List<List<int>> _epsilon = [];
    // Each expression's states [From, To), its accepting state, and for a negative lookahead (Negated) whether its body
    // ends with '$' (a string the body matches whole is refused) or not (a string that starts with a match is).
    private readonly (int From, int To, int Accept, bool Negated, bool WholeString)[] _automata;

    /// <summary>The states before any character (ε-closed).</summary>
    public PatternStates Start { get; }

    /// <summary>Expressions the string must all match (a <c>format</c>'s and a <c>pattern</c>, say), run side by side.</summary>
    private StringPattern(IReadOnlyList<string> sources)
    {
        var automata = new List<(int, int, int, bool, bool)>();
        var starts = new List<int>();
        // A lookahead at the start of an anchored pattern (^(?=.{1,253}$)…, ^(?=.*\d)…) asks the whole string to
        // begin with a match of its body as well (or, negative, not to): one more expression side by side.
        var expressions = sources.Select(source => new Parser(source)).SelectMany(parser =>
        {
            var main = parser.Parse();
            return parser.Lookaheads.Append((main.AnchoredStart, main.Body, main.AnchoredEnd, false));
        });
        foreach (var (anchoredStart, body, anchoredEnd, negated) in expressions)
        {
            var from = _sets.Count;
            var anyChar = new Node.Set([(0, 0x10FFFF)], false);
            var whole = body;
            if (!anchoredStart) whole = new Node.Sequence([new Node.Repeat(anyChar, 0, null), whole]);
            // A negative body is run as written: reaching its end is what refuses the string.
            if (!anchoredEnd && !negated) whole = new Node.Sequence([whole, new Node.Repeat(anyChar, 0, null)]);
            var (start, end) = Build(whole);
            starts.Add(start);
            automata.Add((from, _sets.Count, end, negated, anchoredEnd));
        }
        _automata = [.. automata];
        _live = Live();
        Start = Closure(starts) ?? throw new FormatException("it matches no string that can be written in JSON without \\u escapes");
    }

    // Characters a pattern string can hold: no \u escapes there, so no control characters beyond \b \t \n \f \r.
    private static readonly (int Lo, int Hi)[] Writable = [(8, 10), (12, 13), (0x20, 0xD7FF), (0xE000, 0x10FFFF)];

    private readonly bool[] _live;

    /// <summary>The states from which the accepting state can be reached through writable characters.</summary>
    private bool[] Live()
    {
        var live = new bool[_sets.Count];
        foreach (var automaton in _automata) live[automaton.Accept] = true;
        for (var changed = true; changed;)
        {
            changed = false;
            for (var s = 0; s < live.Length; s++)
            {
                if (live[s]) continue;
                if (_epsilon[s].Any(e => live[e]) || _sets[s] is { } ranges && live[_next[s]] && AnyWritable(ranges, _negated[s]))
                    changed = live[s] = true;
            }
        }
        return live;
    }

    private static bool AnyWritable((int Lo, int Hi)[] ranges, bool negated) => Writable.Any(w => AnyIn(ranges, negated, w.Lo, w.Hi));

    /// <summary>The set matches some character of [lo, hi].</summary>
    private static bool AnyIn((int Lo, int Hi)[] ranges, bool negated, int lo, int hi)
    {
        // Walk [lo, hi] range by range: a stretch inside the set's ranges matches unless negated, one outside only if negated.
        for (var c = lo; c <= hi;)
        {
            var cover = ranges.Where(r => r.Lo <= c && c <= r.Hi).Select(r => r.Hi).DefaultIfEmpty(-1).Max();
            if (cover >= 0 != negated) return true;
            c = cover >= 0 ? cover + 1 : ranges.Where(r => r.Lo > c).Select(r => r.Lo).DefaultIfEmpty(hi + 1).Min();
        }
        return false;
    }

    /// <summary>
    /// Some character of [lo, hi] moves the pattern on, after which it can complete in at most <paramref name="budget"/>
    /// and at least <paramref name="need"/> more characters: checked at a UTF-8 lead byte (the characters it can begin)
    /// and at a '\' (the characters an escape can give), so that no token ends where no character can complete.
    /// </summary>
    public bool CanStep(PatternStates states, int lo, int hi, int budget = Unreachable, int need = 0)
    {
        if (_canStep.TryGetValue((states, lo, hi, budget, need), out var known)) return known;
        if (_canStep.Count >= MaxRemembered) _canStep.Clear();
        var can = false;
        foreach (var c in Representatives(states, lo, hi))
        {
            if (Step(states, c) is { } next && Viable(next, budget, need))
            {
                can = true;
                break;
            }
        }
        return _canStep[(states, lo, hi, budget, need)] = can;
    }

    /// <summary>
    /// One writable character of each stretch of [lo, hi] that every state of <paramref name="states"/> treats alike:
    /// what one of them does, all of them do.
    /// </summary>
    private List<int> Representatives(PatternStates states, int lo, int hi)
    {
        var cuts = new SortedSet<int> { lo, hi + 1 };
        void Cut(int at)
        {
            if (at > lo && at <= hi) cuts.Add(at);
        }
        foreach (var (wlo, whi) in Writable)
        {
            Cut(wlo);
            Cut(whi + 1);
        }
        foreach (var state in states.Members())
        {
            if (_sets[state] is not { } ranges || !_live[_next[state]]) continue;
            foreach (var (rlo, rhi) in ranges)
            {
                Cut(rlo);
                Cut(rhi + 1);
            }
        }
        var representatives = new List<int>();
        foreach (var cut in cuts)
        {
            if (cut <= hi && Matches(Writable, false, cut)) representatives.Add(cut);
        }
        return representatives;
    }

    /// <summary>
    /// The expressions can still accept after between <paramref name="need"/> and <paramref name="budget"/> more
    /// characters (<see cref="Unreachable"/>: no upper bound). With both bounds the lengths themselves are checked, not
    /// only the shortest and the longest: <c>^(ab)+$</c> with 3 characters to go has matches of 2 and 4, none of 3.
    /// </summary>
    public bool Viable(PatternStates states, int budget, int need)
    {
        if (budget != Unreachable && Distance(states) > budget) return false;
        if (need <= 0) return true;
        if (Longest(states) < need) return false;
        return budget == Unreachable || Lengths(states) is not { } lengths || lengths.Any(need, budget);
    }

    /// <summary>Sets of sets a <see cref="Lengths"/> walk may hold per level, and levels it may take; past them: unknown (hopeful).</summary>
    private const int MaxLevels = 2048;

    /// <summary>
    /// The numbers of characters after which the expressions can accept, from <paramref name="from"/>: walked one
    /// length at a time over the sets of sets reachable, until a level repeats (from there the lengths repeat with it);
    /// null when the walk grows past its bounds.
    /// </summary>
    private AcceptedLengths? Lengths(PatternStates from)
    {
        if (_lengths.TryGetValue(from, out var known)) return known;
        if (_lengths.Count >= MaxRemembered) _lengths.Clear();
        var seen = new Dictionary<Level, int>();
        var accepts = new List<bool>();
        var level = new Level([from]);
        AcceptedLengths? lengths = null;
        while (true)
        {
            if (level.Sets.Count == 0)
            {
                lengths = new AcceptedLengths([.. accepts], []);
                break;
            }
            if (seen.TryGetValue(level, out var start))
            {
                lengths = new AcceptedLengths([.. accepts[..start]], [.. accepts[start..]]);
                break;
            }
            if (accepts.Count == MaxLevels || level.Sets.Count > MaxSearch) break;
            seen[level] = accepts.Count;
            accepts.Add(level.Sets.Any(Accepts));
            var next = new HashSet<PatternStates>();
            foreach (var set in level.Sets)
            {
                foreach (var c in Representatives(set, 0, 0x10FFFF))
                {
                    if (Advance(set, c) is { } after) next.Add(after);
                }
            }
            level = new Level(next);
        }
        _lengths[from] = lengths;
        return lengths;
    }

    /// <summary>The sets of states reachable in exactly some number of characters (equal when they hold the same sets).</summary>
    private sealed class Level(HashSet<PatternStates> sets) : IEquatable<Level>
    {
        private readonly int _hash = sets.Aggregate(sets.Count, (h, s) => h ^ s.GetHashCode() * 31);

        public HashSet<PatternStates> Sets => sets;

        public bool Equals(Level? other) => other is not null && _hash == other._hash && sets.SetEquals(other.Sets);

        public override bool Equals(object? obj) => Equals(obj as Level);

        public override int GetHashCode() => _hash;
    }

    /// <summary>Accepting lengths: <see cref="Prefix"/>[k] for k below its length, then <see cref="Cycle"/> over and over (empty: no more).</summary>
    private sealed record AcceptedLengths(bool[] Prefix, bool[] Cycle)
    {
        public bool Any(int lo, int hi)
        {
            for (var k = Math.Max(lo, 0); k <= hi; k++)
            {
                if (k < Prefix.Length)
                {
                    if (Prefix[k]) return true;
                    continue;
                }
                if (Cycle.Length == 0) return false;
                for (var j = k; j <= hi && j < k + Cycle.Length; j++)
                {
                    if (Cycle[(j - Prefix.Length) % Cycle.Length]) return true;
                }
                return false;
            }
            return false;
        }
    }

    /// <summary>No string completes the expressions together (<see cref="Distance"/>).</summary>
    public const int Unreachable = int.MaxValue;

    /// <summary>Sets of states a <see cref="Distance"/> search visits at most; past it the answer is "0" (hopeful).</summary>
    private const int MaxSearch = 4096;

    /// <summary>
    /// The fewest characters after which every expression accepts, or <see cref="Unreachable"/>: a maxLength leaves
    /// room for the pattern to finish, and expressions side by side (a format and a pattern, a lookahead) that could
    /// each still finish but never together are a dead end caught at the character that leads into it.
    /// </summary>
    public int Distance(PatternStates states)
    {
        if (_distance.TryGetValue(states, out var known)) return known;
        if (_distance.Count >= MaxRemembered) _distance.Clear();
        return _distance[states] = Search(states);
    }

    /// <summary>
    /// The most characters after which every expression can accept (<see cref="Unbounded"/> when a loop allows any
    /// number, or when the search is cut short), or -1 if they never can: a minLength leaves the pattern room to reach it.
    /// </summary>
    public int Longest(PatternStates states)
    {
        if (_longest.TryGetValue(states, out var known)) return known;
        if (_longest.Count >= MaxRemembered) _longest.Clear();
        return _longest[states] = LongestPath(states);
    }

    /// <summary>No bound on how long the completion may be (<see cref="Longest"/>).</summary>
    public const int Unbounded = int.MaxValue;

    /// <summary>The graph of sets reachable from <paramref name="from"/>; then the longest path to acceptance over it.</summary>
    private int LongestPath(PatternStates from)
    {
        var edges = new Dictionary<PatternStates, List<PatternStates>>();
        var order = new List<PatternStates> { from };
        edges[from] = [];
        for (var i = 0; i < order.Count; i++)
        {
            foreach (var c in Representatives(order[i], 0, 0x10FFFF))
            {
                if (Advance(order[i], c) is not { } next) continue;
                edges[order[i]].Add(next);
                if (edges.ContainsKey(next)) continue;
                if (order.Count == MaxSearch) return Unbounded;
                edges[next] = [];
                order.Add(next);
            }
        }
        // The sets that lead to acceptance; a loop among them means any length.
        var useful = new HashSet<PatternStates>(order.Where(Accepts));
        for (var changed = true; changed;)
        {
            changed = false;
            foreach (var set in order)
            {
                if (!useful.Contains(set) && edges[set].Any(useful.Contains)) changed = useful.Add(set);
            }
        }
        if (!useful.Contains(from)) return -1;
        var longest = new Dictionary<PatternStates, int>();
        var onPath = new HashSet<PatternStates>();
        int Visit(PatternStates set)
        {
            if (longest.TryGetValue(set, out var known)) return known;
            if (!onPath.Add(set)) return Unbounded;
            var best = Accepts(set) ? 0 : -1;
            foreach (var next in edges[set].Where(useful.Contains))
            {
                var rest = Visit(next);
                best = rest == Unbounded ? Unbounded : Math.Max(best, rest + 1);
                if (best == Unbounded) break;
            }
            onPath.Remove(set);
            return longest[set] = best;
        }
        return Visit(from);
    }

    /// <summary>Breadth first over the sets of states the expressions reach together, one character per level.</summary>
    private int Search(PatternStates from)
    {
        var level = new List<PatternStates> { from };
        var seen = new HashSet<PatternStates> { from };
        for (var depth = 0; level.Count > 0; depth++)
        {
            var next = new List<PatternStates>();
            foreach (var set in level)
            {
                if (Accepts(set)) return depth;
                foreach (var c in Representatives(set, 0, 0x10FFFF))
                {
                    if (Advance(set, c) is not { } after || !seen.Add(after)) continue;
                    if (seen.Count > MaxSearch) return 0;
                    next.Add(after);
                }
            }
            level = next;
        }
        return Unreachable;
    }

    private static IEnumerable<(int Lo, int Hi)> Complement((int Lo, int Hi)[] ranges)
    {
        var next = 0;
        foreach (var (lo, hi) in ranges.OrderBy(r => r.Lo))
        {
            if (lo > next) yield return (next, lo - 1);
            next = Math.Max(next, hi + 1);
        }
        if (next <= 0x10FFFF) yield return (next, 0x10FFFF);
    }

    /// <exception cref="FormatException">An expression is not in the subset (the message says what and where).</exception>
    public static StringPattern Compile(params IReadOnlyList<string> sources) => new(sources);

    public bool Accepts(PatternStates states) => _automata.All(a => states.Contains(a.Accept) != a.Negated);

    /// <summary>Transitions and lead-byte checks already worked out (a DFA built as the walks need it), bounded.</summary>
    private const int MaxRemembered = 1 << 16;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<(PatternStates, int), PatternStates?> _steps = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(PatternStates, int, int, int, int), bool> _canStep = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<PatternStates, int> _distance = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<PatternStates, int> _longest = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<PatternStates, AcceptedLengths?> _lengths = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<PatternStates, PatternStates> _interned = new();

    /// <summary>
    /// The states after <paramref name="codePoint"/>, or null if an expression cannot go on with it. Remembered: a walk
    /// over the vocabulary asks the same few questions for every token, and equal answers come back as one instance,
    /// so the frames that hold them compare by reference.
    /// </summary>
    public PatternStates? Step(PatternStates states, int codePoint)
    {
        var next = Advance(states, codePoint);
        // One expression: its states are pruned to those that can still accept. Several: they must accept together.
        return next is null || _automata.Length > 1 && Distance(next) == Unreachable ? null : next;
    }

    /// <summary>The states after <paramref name="codePoint"/>, each expression on its own; remembered and interned.</summary>
    private PatternStates? Advance(PatternStates states, int codePoint)
    {
        if (_steps.TryGetValue((states, codePoint), out var known)) return known;
        if (_steps.Count >= MaxRemembered) _steps.Clear();
        var next = Move(states, codePoint);
        if (next is not null)
        {
            if (_interned.Count >= MaxRemembered) _interned.Clear();
            next = _interned.GetOrAdd(next, next); // one instance per distinct set of states
        }
        return _steps.GetOrAdd((states, codePoint), next);
    }

    private PatternStates? Move(PatternStates states, int codePoint)
    {
        var moved = new List<int>();
        foreach (var state in states.Members())
        {
            if (_sets[state] is { } ranges && Matches(ranges, _negated[state], codePoint)) moved.Add(_next[state]);
        }
        return moved.Count == 0 ? null : Closure(moved);
    }

    private static bool Matches((int Lo, int Hi)[] ranges, bool negated, int c)
    {
        var inside = false;
        foreach (var (lo, hi) in ranges)
        {
            if (c >= lo && c <= hi)
            {
                inside = true;
                break;
            }
        }
        return inside != negated;
    }

    /// <summary>The ε-closure, less the states that can no longer reach acceptance; null when an expression has none left.</summary>
    private PatternStates? Closure(IEnumerable<int> from)
    {
        var bits = new ulong[(_sets.Count + 63) / 64];
        var seen = new bool[_sets.Count];
        var stack = new Stack<int>(from);
        var any = false;
        while (stack.Count > 0)
        {
            var s = stack.Pop();
            if (seen[s] || !_live[s]) continue;
            seen[s] = true;
            bits[s >> 6] |= 1UL << (s & 63);
            any = true;
            foreach (var e in _epsilon[s]) stack.Push(e);
        }
        // Every expression still able to match, and no negative lookahead's body matched by a prefix it refuses.
        return any && _automata.All(a => a.Negated ? a.WholeString || !seen[a.Accept] : Enumerable.Range(a.From, a.To - a.From).Any(st => seen[st]))
            ? new PatternStates(bits) : null;
    }

    private int NewState()
    {
        if (_sets.Count == MaxStates) throw new FormatException($"it needs more than {MaxStates} automaton states (counted repeats copy their operand)");
        _sets.Add(null);
        _negated.Add(false);
        _next.Add(-1);
        _epsilon.Add([]);
        return _sets.Count - 1;
    }

    /// <summary>Thompson's construction: a fragment from a fresh start state to a fresh end state.</summary>
    private (int Start, int End) Build(Node node)
    {
        switch (node)
        {
            case Node.Set set:
            {
                var (start, end) = (NewState(), NewState());
                (_sets[start], _negated[start], _next[start]) = (set.Ranges, set.Negated, end);
                return (start, end);
            }
            case Node.Sequence sequence:
            {
                var start = NewState();
                var at = start;
                foreach (var part in sequence.Parts)
                {
                    var (s, e) = Build(part);
                    _epsilon[at].Add(s);
                    at = e;
                }
                return (start, at);
            }
            case Node.Alternation alternation:
            {
                var (start, end) = (NewState(), NewState());
                foreach (var option in alternation.Options)
                {
                    var (s, e) = Build(option);
                    _epsilon[start].Add(s);
                    _epsilon[e].Add(end);
                }
                return (start, end);
            }
            case Node.Repeat repeat:
            {
                var start = NewState();
                var at = start;
                for (var i = 0; i < repeat.Min; i++)
                {
                    var (s, e) = Build(repeat.Operand);
                    _epsilon[at].Add(s);
                    at = e;
                }
                var end = NewState();
                if (repeat.Max is null)
                {
                    var (s, e) = Build(repeat.Operand); // zero or more further copies: a loop
                    _epsilon[at].Add(s);
                    _epsilon[e].Add(s);
                    _epsilon[e].Add(end);
                }
                else
                {
                    for (var i = repeat.Min; i < repeat.Max; i++) // each optional copy may be the last
                    {
                        _epsilon[at].Add(end);
                        var (s, e) = Build(repeat.Operand);
                        _epsilon[at].Add(s);
                        at = e;
                    }
                }
                _epsilon[at].Add(end);
                return (start, end);
            }
            default:
                throw new InvalidOperationException(node.GetType().Name);
        }
    }

    private abstract record Node
    {
        public sealed record Set((int Lo, int Hi)[] Ranges, bool Negated) : Node;

        public sealed record Sequence(IReadOnlyList<Node> Parts) : Node;

        public sealed record Alternation(IReadOnlyList<Node> Options) : Node;

        public sealed record Repeat(Node Operand, int Min, int? Max) : Node;
    }

    private sealed class Parser(string source)
    {
        private static readonly (int, int)[] Digits = [('0', '9')];
        private static readonly (int, int)[] Word = [('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')];
        private static readonly (int, int)[] Space =
            [(9, 13), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)];
        private static readonly (int, int)[] LineTerminators = [(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)];

        private int _at;

        /// <summary>The lookaheads <see cref="Parse"/> found at the start of an anchored pattern.</summary>
        public List<(bool AnchoredStart, Node Body, bool AnchoredEnd, bool Negated)> Lookaheads { get; } = [];

        public (bool AnchoredStart, Node Body, bool AnchoredEnd) Parse()
        {
            var anchoredStart = Peek('^');
            if (anchoredStart) _at++;
            while (anchoredStart && _at + 2 < source.Length && source.AsSpan(_at, 3) is "(?=" or "(?!")
            {
                var negated = source[_at + 2] == '!';
                _at += 3;
                if (Peek('^')) _at++; // ^(?!^…): anchored where it stands anyway
                var ahead = Alternation(out var options);
                var aheadEnd = Peek('$');
                if (aheadEnd) _at++;
                if (!Peek(')')) throw Error(aheadEnd ? "'$' is supported only at the end of a lookahead" : "'(' without ')'");
                if (aheadEnd && options > 1)
                    throw Error("anchors around a top-level '|' apply to one alternative each; group the alternatives: (?=(a|b)$)");
                _at++;
                Lookaheads.Add((true, ahead, aheadEnd, negated));
            }
            var body = Alternation(out var alternatives);
            if (_at < source.Length && source[_at] != '$') throw Error($"unexpected '{source[_at]}'");
            var anchoredEnd = _at < source.Length;
            if (anchoredEnd && ++_at != source.Length) throw Error("'$' is supported only at the end");
            if ((anchoredStart || anchoredEnd) && alternatives > 1)
                throw Error("anchors around a top-level '|' apply to one alternative each; group the alternatives: ^(a|b)$");
            return (anchoredStart, body, anchoredEnd);
        }

        private FormatException Error(string what) => new($"{what} (at offset {_at})");

        private bool Peek(char c) => _at < source.Length && source[_at] == c;

        private Node Alternation(out int count)
        {
            var options = new List<Node> { Sequence() };
            while (Peek('|'))
            {
                _at++;
                options.Add(Sequence());
            }
            count = options.Count;
            return options.Count == 1 ? options[0] : new Node.Alternation(options);
        }

        private Node.Sequence Sequence()
        {
            var parts = new List<Node>();
            while (_at < source.Length && source[_at] is not ('|' or ')' or '$'))
            {
                var atom = Atom();
                parts.Add(Quantified(atom));
            }
            return new Node.Sequence(parts);
        }

        private Node Quantified(Node atom)
        {
            while (_at < source.Length)
            {
                var symbol = source[_at];
                (int Min, int? Max)? bounds = symbol switch
                {
                    '*' => (0, null),
                    '+' => (1, null),
                    '?' => (0, 1),
                    '{' => Braces(), // reads through '}'
                    _ => null,
                };
                if (bounds is not { } b) return atom;
                if (symbol != '{') _at++;
                if (Peek('?')) _at++; // lazy: the same language
                atom = new Node.Repeat(atom, b.Min, b.Max);
            }
            return atom;
        }

        private (int, int?)? Braces()
        {
            var close = source.IndexOf('}', _at);
            if (close < 0) throw Error("'{' without '}'");
            var inside = source[(_at + 1)..close].Split(',');
            static int? Number(string s) => int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;
            (int, int?)? bounds = inside switch
            {
                [var n] when Number(n) is { } exact => (exact, exact),
                [var n, ""] when Number(n) is { } min => (min, null),
                [var n, var m] when Number(n) is { } min && Number(m) is { } max && max >= min => (min, max),
                _ => null,
            };
            if (bounds is null) throw Error($"'{{{source[(_at + 1)..close]}}}' is not a repeat count");
            _at = close + 1;
            return bounds;
        }

        private Node Atom()
        {
            var c = source[_at];
            switch (c)
            {
                case '(':
                    _at++;
                    if (Peek('?'))
                    {
                        if (_at + 1 < source.Length && source[_at + 1] == ':') _at += 2;
                        else if (_at + 2 < source.Length && source[_at + 1] == '<' && source[_at + 2] is not ('=' or '!'))
                        {
                            var close = source.IndexOf('>', _at);
                            if (close < 0) throw Error("unclosed group name");
                            _at = close + 1;
                        }
                        else throw Error("lookaround is not supported, except lookaheads right after a leading '^': ^(?=…)");
                    }
                    var inner = Alternation(out _);
                    if (!Peek(')')) throw Error("'(' without ')'");
                    _at++;
                    return inner;
                case '[':
                    return Class();
                case '.':
                    _at++;
                    return new Node.Set(LineTerminators, Negated: true);
                case '\\':
                    _at++;
                    return Escape(inClass: false);
                case '^':
                    throw Error("'^' is supported only at the start");
                case '*' or '+' or '?' or '{':
                    throw Error($"'{c}' has nothing to repeat");
                default:
                    var codePoint = char.ConvertToUtf32(source, _at);
                    _at += char.IsSurrogatePair(source, _at) ? 2 : 1;
                    return new Node.Set([(codePoint, codePoint)], false);
            }
        }

        private Node.Set Escape(bool inClass)
        {
            if (_at >= source.Length) throw Error("'\\' at the end");
            var c = source[_at++];
            switch (c)
            {
                case 'd': return new(Digits, false);
                case 'D': return new(Digits, true);
                case 'w': return new(Word, false);
                case 'W': return new(Word, true);
                case 's': return new(Space, false);
                case 'S': return new(Space, true);
                case 'n': return Single('\n');
                case 'r': return Single('\r');
                case 't': return Single('\t');
                case 'f': return Single('\f');
                case 'v': return Single('\v');
                case '0' when !(_at < source.Length && char.IsAsciiDigit(source[_at])): return Single('\0');
                case 'b' when inClass: return Single('\b');
                case 'x': return Single(Hex(2));
                case 'u' when Peek('{'):
                {
                    var close = source.IndexOf('}', _at);
                    if (close < 0 || !int.TryParse(source[(_at + 1)..close], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var cp) || cp > 0x10FFFF)
                        throw Error("bad \\u{…} escape");
                    _at = close + 1;
                    return Single(cp);
                }
                case 'u': return Single(Hex(4));
                case 'b' or 'B': throw Error("word boundaries are not supported");
                case >= '1' and <= '9': throw Error("backreferences are not supported");
                case 'k' or 'p' or 'P' or 'c': throw Error($"'\\{c}' is not supported");
                default:
                    if (char.IsAsciiLetterOrDigit(c)) throw Error($"'\\{c}' is not a known escape");
                    return Single(c); // an escaped punctuation character is itself
            }
        }

        private static Node.Set Single(int c) => new([(c, c)], false);

        private int Hex(int digits)
        {
            if (_at + digits > source.Length || !int.TryParse(source.AsSpan(_at, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var value))
                throw Error("bad hexadecimal escape");
            _at += digits;
            return value;
        }

        private Node.Set Class()
        {
            _at++; // '['
            var negated = Peek('^');
            if (negated) _at++;
            var ranges = new List<(int, int)>();
            while (_at < source.Length && source[_at] != ']')
            {
                var (lo, loSet) = ClassAtom();
                if (loSet is null && Peek('-') && _at + 1 < source.Length && source[_at + 1] != ']')
                {
                    _at++;
                    var (hi, hiSet) = ClassAtom();
                    if (hiSet is not null || hi < lo) throw Error("bad range in a class");
                    ranges.Add((lo, hi));
                }
                else if (loSet is { } set)
                {
                    ranges.AddRange(set.Negated ? Complement(set.Ranges) : set.Ranges);
                }
                else
                {
                    ranges.Add((lo, lo));
                }
            }
            if (!Peek(']')) throw Error("'[' without ']'");
            _at++;
            return new([.. ranges], negated);
        }

        /// <summary>One character of a class, or a shorthand class (\d, \w, \s and negations).</summary>
        private (int CodePoint, Node.Set? Set) ClassAtom()
        {
            if (source[_at] == '\\')
            {
                _at++;
                var set = Escape(inClass: true);
                return set.Ranges is [var (lo, hi)] && lo == hi && !set.Negated ? (lo, null) : (-1, set);
            }
            var codePoint = char.ConvertToUtf32(source, _at);
            _at += char.IsSurrogatePair(source, _at) ? 2 : 1;
            return (codePoint, null);
        }
    }
}

/// <summary>A set of NFA states, immutable, with value equality (part of a grammar state).</summary>
internal sealed class PatternStates : IEquatable<PatternStates>
{
    private readonly ulong[] _bits;
    private readonly int _hash;

    public PatternStates(ulong[] bits)
    {
        _bits = bits;
        var hash = new HashCode();
        foreach (var word in bits) hash.Add(word);
        _hash = hash.ToHashCode();
    }

    public bool Contains(int state) => (_bits[state >> 6] & 1UL << (state & 63)) != 0;

    public IEnumerable<int> Members()
    {
        for (var word = 0; word < _bits.Length; word++)
        {
            for (var rest = _bits[word]; rest != 0; rest &= rest - 1)
                yield return word * 64 + System.Numerics.BitOperations.TrailingZeroCount(rest);
        }
    }

    public bool Equals(PatternStates? other) =>
        ReferenceEquals(this, other) || other is not null && _hash == other._hash && _bits.AsSpan().SequenceEqual(other._bits);

    public override bool Equals(object? obj) => Equals(obj as PatternStates);

    public override int GetHashCode() => _hash;
}
