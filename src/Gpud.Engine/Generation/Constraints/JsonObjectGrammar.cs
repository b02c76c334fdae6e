namespace Gpud.Engine.Generation.Constraints;

/// <summary>
/// Where a byte-by-byte reader of one JSON object (RFC 8259) stands: OpenAI's JSON mode accepts exactly the texts
/// that take it from <see cref="Start"/> to <see cref="IsComplete"/>. A small value type, so that a walk over the
/// vocabulary copies it at every branch instead of undoing steps. Nesting is kept as a bit stack (object or array) up
/// to <see cref="MaxDepth"/> levels; runs of whitespace between tokens are capped at <see cref="MaxWhitespace"/> bytes, so a
/// model cannot fill its answer with blank lines (the usual failure of unconstrained whitespace). Bytes ≥ 0x80 are
/// accepted inside strings only, as whole, well-formed UTF-8 characters (no overlong forms, surrogates or code points
/// above U+10FFFF). At most one whitespace byte may come before the object.
/// </summary>
public struct JsonObjectGrammar : IByteGrammar<JsonObjectGrammar>
{
    public const int MaxDepth = 64;
    public const int MaxWhitespace = 20;

    private Mode _mode;
    private byte _sub; // string: 0 plain, 1 after '\', 2..5 hex digits left + 1; number: NumberState; literal: index into Literal
    private byte _depth;
    private byte _whitespace;
    private byte _continuation; // UTF-8 continuation bytes still owed inside a string
    private byte _lead; // the lead byte while its first continuation byte is owed (E0, ED, F0, F4 narrow its range)
    private ulong _objects; // bit d set: the container at depth d + 1 is an object
    private string? _literal;

    private enum Mode : byte
    {
        Top, // before the object: whitespace or '{'
        Value, // a value must follow (after ':' or an array's ',')
        ArrayFirst, // just after '[': a value or ']'
        ObjectFirst, // just after '{': a key or '}'
        ObjectKey, // after an object's ',': a key
        Colon, // after a key
        AfterValue, // ',' or the container's closer
        Key, // inside a key string
        String, // inside a string value
        Number,
        Literal, // true, false, null
        Done,
    }

    public static JsonObjectGrammar Start => default;

    /// <summary>The object has been closed: nothing more may follow.</summary>
    public readonly bool IsComplete => _mode == Mode.Done;

    /// <summary>Reads one byte; false (and the state unchanged in meaning) if no JSON object can continue with it.</summary>
    public bool Advance(byte c)
    {
        var isSpace = c is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t';
        switch (_mode)
        {
            case Mode.Key or Mode.String:
                return AdvanceString(c);
            case Mode.Number:
                if (AdvanceNumber(c)) return true;
                if (!JsonLexis.IsWhole((JsonLexis.NumberState)_sub)) return false;
                _mode = Mode.AfterValue; // the number ended; the byte belongs to what follows
                return AdvanceStructure(c, isSpace);
            case Mode.Literal:
                if (c != _literal![_sub]) return false;
                if (++_sub == _literal.Length) EndValue();
                return true;
            case Mode.Done:
                return false;
            default:
                return AdvanceStructure(c, isSpace);
        }
    }

    private bool AdvanceStructure(byte c, bool isSpace)
    {
        if (isSpace)
        {
            // Before the object one byte at most ("\n{", SentencePiece's "▁{"): the answer starts at its object.
            if (_whitespace == (_mode == Mode.Top ? 1 : MaxWhitespace)) return false;
            _whitespace++;
            return true;
        }
        _whitespace = 0;
        switch (_mode)
        {
            case Mode.Top:
                return c == '{' && Open(isObject: true);
            case Mode.ObjectFirst when c == '}':
            case Mode.AfterValue when c == '}' && TopIsObject:
            case Mode.ArrayFirst when c == ']':
            case Mode.AfterValue when c == ']' && !TopIsObject:
                _depth--;
                EndValue();
                return true;
            case Mode.ObjectFirst or Mode.ObjectKey when c == '"':
                _mode = Mode.Key;
                _sub = 0;
                return true;
            case Mode.Colon when c == ':':
                _mode = Mode.Value;
                return true;
            case Mode.AfterValue when c == ',':
                _mode = TopIsObject ? Mode.ObjectKey : Mode.Value;
                return true;
            case Mode.Value or Mode.ArrayFirst:
                return StartValue(c);
            default:
                return false;
        }
    }

    private readonly bool TopIsObject => (_objects >> (_depth - 1) & 1) == 1;

    private bool Open(bool isObject)
    {
        if (_depth == MaxDepth) return false;
        if (isObject) _objects |= 1UL << _depth;
        else _objects &= ~(1UL << _depth);
        _depth++;
        _mode = isObject ? Mode.ObjectFirst : Mode.ArrayFirst;
        return true;
    }

    private bool StartValue(byte c)
    {
        switch (c)
        {
            case (byte)'{':
                return Open(isObject: true);
            case (byte)'[':
                return Open(isObject: false);
            case (byte)'"':
                _mode = Mode.String;
                _sub = 0;
                return true;
            case (byte)'-' or (>= (byte)'0' and <= (byte)'9'):
                (_mode, _sub) = (Mode.Number, (byte)JsonLexis.NumberStart(c)!.Value);
                return true;
            case (byte)'t' or (byte)'f' or (byte)'n':
                _literal = c == 't' ? "true" : c == 'f' ? "false" : "null";
                (_mode, _sub) = (Mode.Literal, 1);
                return true;
            default:
                return false;
        }
    }

    /// <summary>A value (or key) ended: a key waits for its colon, a value for ',' or a closer, the outer object for nothing.</summary>
    private void EndValue()
    {
        _literal = null;
        _mode = _mode == Mode.Key ? Mode.Colon : _depth == 0 ? Mode.Done : Mode.AfterValue;
    }

    private bool AdvanceString(byte c)
    {
        if (_continuation > 0)
        {
            if (!JsonLexis.IsContinuation(c, _lead)) return false;
            _lead = 0;
            _continuation--;
            return true;
        }
        switch (_sub)
        {
            case 0 when c >= 0x80:
                _continuation = (byte)JsonLexis.Continuations(c);
                _lead = c;
                return _continuation > 0;
            case 0:
                if (c == '"')
                {
                    EndValue();
                    return true;
                }
                if (c == '\\') _sub = 1;
                return c >= 0x20; // raw control characters must be escaped
            case 1:
                if (c == 'u')
                {
                    _sub = 5; // four hex digits to go
                    return true;
                }
                _sub = 0;
                return c is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t';
            default:
                if (!char.IsAsciiHexDigit((char)c)) return false;
                _sub = (byte)(_sub == 2 ? 0 : _sub - 1);
                return true;
        }
    }

    private bool AdvanceNumber(byte c)
    {
        if (JsonLexis.NumberNext((JsonLexis.NumberState)_sub, c) is not { } next) return false;
        _sub = (byte)next;
        return true;
    }

    public readonly bool Equals(JsonObjectGrammar other) =>
        _mode == other._mode && _sub == other._sub && _depth == other._depth && _whitespace == other._whitespace && _objects == other._objects
        && _continuation == other._continuation && _lead == other._lead
        && ReferenceEquals(_literal, other._literal);

    public override readonly bool Equals(object? obj) => obj is JsonObjectGrammar other && Equals(other);

    public override readonly int GetHashCode() => HashCode.Combine(_mode, _sub, _depth, _whitespace, _objects, _continuation, _lead);

    public static bool operator ==(JsonObjectGrammar left, JsonObjectGrammar right) => left.Equals(right);

    public static bool operator !=(JsonObjectGrammar left, JsonObjectGrammar right) => !left.Equals(right);
}
