namespace Gpud.Engine.Generation.Constraints;

/// <summary>A compiled schema's value kinds; <see cref="SchemaFrame"/> reads them byte by byte.</summary>
internal abstract class SchemaNode;

/// <summary>The answer: one value of <see cref="Value"/>, at most one whitespace byte before it, nothing after.</summary>
internal sealed class RootNode(SchemaNode value) : SchemaNode
{
    public SchemaNode Value { get; } = value;
}

/// <summary>
/// An object. With declared properties, they are written in declaration order (as OpenAI's structured outputs do),
/// each optional one skippable; with none, any string keys (<see cref="IsFree"/>) with <see cref="Values"/> values,
/// or no keys at all when <see cref="Values"/> is null.
/// </summary>
internal sealed class ObjectNode(StringNode keyString) : SchemaNode
{
    private int[] _nextRequired = [0];

    public Property[] Properties { get; private set; } = [];

    public SchemaNode? Values { get; set; }

    /// <summary>Reads the keys of a free object.</summary>
    public StringNode KeyString { get; } = keyString;

    public bool IsFree => Properties.Length == 0;

    /// <summary>Free JSON: not started past <see cref="JsonSchema.MaxDepth"/>.</summary>
    public bool DepthLimited { get; init; }

    public void SetProperties(Property[] properties)
    {
        Properties = properties;
        _nextRequired = new int[properties.Length + 1];
        _nextRequired[properties.Length] = properties.Length;
        for (var i = properties.Length - 1; i >= 0; i--) _nextRequired[i] = properties[i].Required ? i : _nextRequired[i + 1];
    }

    /// <summary>A required property is still to come at or after declared property <paramref name="index"/>.</summary>
    public bool RequiresFrom(int index) => !IsFree && _nextRequired[Math.Min(index, Properties.Length)] < Properties.Length;

    /// <summary>Another property may follow once <paramref name="index"/> properties have been passed.</summary>
    public bool MoreFrom(int index) => IsFree ? Values is not null : index < Properties.Length;
}

/// <param name="Key">The key as written: JSON string, quotes included, UTF-8.</param>
internal sealed record Property(string Name, byte[] Key, bool Required, SchemaNode Value);

/// <param name="prefix">A tuple's item schemas by position (<c>prefixItems</c>); <paramref name="items"/> is for the rest.</param>
internal sealed class ArrayNode(SchemaNode items, int minItems, int? maxItems, SchemaNode[]? prefix = null) : SchemaNode
{
    public SchemaNode Items { get; } = items;

    public SchemaNode[] Prefix { get; } = prefix ?? [];

    /// <summary>The schema of the item at <paramref name="index"/> (0-based).</summary>
    public SchemaNode ItemAt(int index) => index < Prefix.Length ? Prefix[index] : Items;

    public int MinItems { get; } = minItems;

    public int? MaxItems { get; set; } = maxItems;

    /// <summary>Free JSON: not started past <see cref="JsonSchema.MaxDepth"/>.</summary>
    public bool DepthLimited { get; init; }

    /// <summary>
    /// Item counts are told apart only up to here (past it every count allows the same): an array without bounds
    /// keeps one state for all its items, so the tokens of its n-th string are the tokens of its first.
    /// </summary>
    public int CountCap => Math.Max(MaxItems ?? MinItems, Prefix.Length);
}

/// <summary>
/// A string; with <c>minLength</c>/<c>maxLength</c>, its characters (Unicode code points) are counted up to
/// <see cref="CountCap"/>; with <c>pattern</c>, they are run through its automaton. Such a string takes no <c>\u</c> escapes: an escaped surrogate pair is one character
/// in two escapes, which a count of escapes would get wrong; the character itself, or a short escape, is written instead.
/// </summary>
internal sealed class StringNode(int minLength = 0, int? maxLength = null, StringPattern? pattern = null) : SchemaNode
{
    public int MinLength { get; } = minLength;

    public int? MaxLength { get; } = maxLength;

    /// <summary>The <c>pattern</c> the string must match, if any (run character by character; no <c>\u</c> escapes either).</summary>
    public StringPattern? Pattern { get; } = pattern;

    /// <summary>Lengths are told apart only up to here; 0: not counted at all.</summary>
    public int CountCap => MaxLength ?? MinLength;

    /// <summary>Any string: its characters change nothing, so a string is one state until it closes.</summary>
    public bool IsPlain => CountCap == 0 && Pattern is null;
}

internal sealed class NumberNode(bool integer, NumberBounds? bounds = null) : SchemaNode
{
    /// <summary>No fraction and no exponent.</summary>
    public bool Integer { get; } = integer;

    /// <summary><c>minimum</c>, <c>maximum</c> and their exclusive forms, if any.</summary>
    public NumberBounds? Bounds { get; } = bounds;
}

/// <summary>
/// A number's range and step (<c>multipleOf</c>), enforced digit by digit: a digit is allowed only if some number it
/// begins lies in the range and is a multiple of the step, and the number may end only at such a value. Bounded
/// numbers are written without exponent, with at most <see cref="MaxDigits"/> digits before and after the point, so
/// that their values are exact in <see cref="decimal"/>.
/// </summary>
/// <param name="MultipleOf">Positive, at most <see cref="MaxStepDigits"/> digits after the point; null: any value.</param>
internal sealed record NumberBounds(decimal? Min, bool MinExclusive, decimal? Max, bool MaxExclusive, decimal? MultipleOf = null)
{
    /// <summary>Fraction digits a step may have: multiples of it up to 10^18 stay exact in <see cref="decimal"/>.</summary>
    public const int MaxStepDigits = 9;

    public const int MaxDigits = 18;

    /// <summary>The number written so far (a prefix of a JSON number without exponent) can still end in range.</summary>
    public bool Reachable(string text, bool integer)
    {
        var negative = text[0] == '-';
        var digits = negative ? text[1..] : text;
        if (digits.Length == 0) return integer ? Overlaps(true, 1, null) : Overlaps(true, 0, null, lowOpen: true);
        var point = digits.IndexOf('.');
        if (point < 0)
        {
            if (digits.Length > MaxDigits) return false;
            var p = decimal.Parse(digits, System.Globalization.CultureInfo.InvariantCulture);
            if (p == 0) return integer ? Overlaps(negative, 0, 0) : Overlaps(negative, 0, 1, highOpen: true); // "0" or "0.…"
            for (var k = 0; k <= MaxDigits - digits.Length; k++) // the digits so far, then k more before any point
            {
                var scale = Pow10(k);
                if (integer ? Overlaps(negative, p * scale, (p + 1) * scale - 1) : Overlaps(negative, p * scale, (p + 1) * scale, highOpen: true)) return true;
            }
            return false;
        }
        var fraction = digits.Length - point - 1;
        if (fraction > MaxDigits) return false;
        var value = decimal.Parse(digits[..point] + "." + digits[(point + 1)..] + "0", System.Globalization.CultureInfo.InvariantCulture);
        return fraction < MaxDigits ? Overlaps(negative, value, value + 1m / Pow10(fraction), highOpen: true) : Overlaps(negative, value, value);
    }

    /// <summary>The whole number is in range (and a multiple of the step).</summary>
    public bool Contains(string text)
    {
        var value = decimal.Parse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture);
        return Overlaps(false, value, value);
    }

    /// <summary>Some number satisfies the bounds and the step (else the schema admits no number here).</summary>
    public bool IsSatisfiable => Min is not { } min || Max is not { } max || Within(min, MinExclusive, max, MaxExclusive);

    /// <summary>
    /// Some x of [low, high] (each end open as told; null high: unbounded), negated when <paramref name="negative"/>,
    /// is in range.
    /// </summary>
    private bool Overlaps(bool negative, decimal low, decimal? high, bool lowOpen = false, bool highOpen = false)
    {
        // As an interval of actual values: negation swaps the ends.
        var (from, fromOpen, to, toOpen) = negative ? ((decimal?)(high is { } h ? -h : null), highOpen, (decimal?)-low, lowOpen) : (low, lowOpen, high, highOpen);
        if (Min is { } min && (from is not { } f || min > f || min == f && MinExclusive)) (from, fromOpen) = (min, MinExclusive);
        if (Max is { } max && (to is not { } t || max < t || max == t && MaxExclusive)) (to, toOpen) = (max, MaxExclusive);
        return from is not { } a || to is not { } b || Within(a, fromOpen, b, toOpen);
    }

    /// <summary>The interval [a, b] (each end open as told) holds a value, and a multiple of the step if there is one.</summary>
    private bool Within(decimal a, bool aOpen, decimal b, bool bOpen)
    {
        if (a > b || a == b && (aOpen || bOpen)) return false;
        if (MultipleOf is not { } step) return true;
        // The first multiple at or after a: the quotient is rounded in decimal, so settle k exactly around it.
        var k = decimal.Ceiling(a / step);
        while ((k - 1) * step >= a) k--;
        while (k * step < a) k++;
        if (aOpen && k * step == a) k++;
        var first = k * step;
        return first < b || first == b && !bOpen;
    }

    public static decimal Pow10(int k)
    {
        var result = 1m;
        for (var i = 0; i < k; i++) result *= 10;
        return result;
    }
}

/// <summary>One of a fixed set of JSON texts (<c>enum</c>, <c>const</c>, booleans, null), compact, UTF-8.</summary>
internal sealed class LiteralNode(byte[][] values) : SchemaNode
{
    public byte[][] Values { get; } = values;
}

/// <summary>Any of its alternatives (<c>anyOf</c>, a list of types).</summary>
internal sealed class ChoiceNode : SchemaNode
{
    public SchemaNode[] Alternatives { get; set; } = [];
}

/// <summary>A <c>$ref</c>; bound once its target is compiled (a schema may refer to itself).</summary>
internal sealed class RefNode(string pointer) : SchemaNode
{
    public string Pointer { get; } = pointer;

    public SchemaNode? Target { get; set; }
}
