namespace Gpud.Engine.Generation.Constraints;

/// <summary>The byte-level rules both JSON grammars share: well-formed UTF-8 inside strings, and number syntax.</summary>
internal static class JsonLexis
{
    /// <summary>A number read so far (RFC 8259 §6).</summary>
    public enum NumberState : byte
    {
        Minus, // '-' read
        Zero, // a leading 0
        Integer,
        Point, // '.' read
        Fraction,
        Exponent, // 'e' read
        ExponentSign,
        ExponentDigits,
    }

    /// <summary>Continuation bytes a UTF-8 lead byte announces (0: not a lead byte of a well-formed character).</summary>
    public static int Continuations(byte lead) => lead switch
    {
        >= 0xC2 and <= 0xDF => 1,
        >= 0xE0 and <= 0xEF => 2,
        >= 0xF0 and <= 0xF4 => 3,
        _ => 0,
    };

    /// <summary>
    /// The range of the continuation byte after <paramref name="lead"/> (0 once past the first continuation byte):
    /// E0, ED, F0 and F4 narrow it, so that no overlong form, UTF-16 surrogate or code point above U+10FFFF is written.
    /// </summary>
    public static bool IsContinuation(byte c, int lead)
    {
        var (low, high) = lead switch
        {
            0xE0 => (0xA0, 0xBF),
            0xED => (0x80, 0x9F),
            0xF0 => (0x90, 0xBF),
            0xF4 => (0x80, 0x8F),
            _ => (0x80, 0xBF),
        };
        return c >= low && c <= high;
    }

    /// <summary>A number's first byte, or null if <paramref name="c"/> cannot begin one.</summary>
    public static NumberState? NumberStart(byte c) =>
        c == '-' ? NumberState.Minus : c == '0' ? NumberState.Zero : c is >= (byte)'1' and <= (byte)'9' ? NumberState.Integer : null;

    /// <summary>The number after <paramref name="c"/>, or null if it does not go on with it (it may have ended: see <see cref="IsWhole"/>).</summary>
    /// <param name="fraction">Whether a fraction may follow (not for integers).</param>
    /// <param name="exponent">Whether an exponent may follow (not for integers, nor for bounded numbers).</param>
    public static NumberState? NumberNext(NumberState at, byte c, bool fraction = true, bool exponent = true)
    {
        var digit = c is >= (byte)'0' and <= (byte)'9';
        var e = exponent && c is (byte)'e' or (byte)'E';
        var point = fraction && c == '.';
        return at switch
        {
            NumberState.Minus => c == '0' ? NumberState.Zero : digit ? NumberState.Integer : null,
            NumberState.Zero => point ? NumberState.Point : e ? NumberState.Exponent : null,
            NumberState.Integer => digit ? NumberState.Integer : point ? NumberState.Point : e ? NumberState.Exponent : null,
            NumberState.Point => digit ? NumberState.Fraction : null,
            NumberState.Fraction => digit ? NumberState.Fraction : e ? NumberState.Exponent : null,
            NumberState.Exponent => digit ? NumberState.ExponentDigits : c is (byte)'+' or (byte)'-' ? NumberState.ExponentSign : null,
            NumberState.ExponentSign or NumberState.ExponentDigits => digit ? NumberState.ExponentDigits : null,
            _ => null,
        };
    }

    /// <summary>The number may end here.</summary>
    public static bool IsWhole(NumberState at) => at is NumberState.Zero or NumberState.Integer or NumberState.Fraction or NumberState.ExponentDigits;
}
