using System.Text;
using Gpud.Engine.Templates;

namespace Gpud.Engine.Templates.Jinja;

internal enum TokenKind
{
    Text,
    OutputStart,   // {{
    OutputEnd,     // }}
    StatementStart, // {%
    StatementEnd,  // %}
    Name,
    String,
    Integer,
    Float,
    Operator,
    End,
}

internal readonly record struct Token(TokenKind Kind, string Value, int Position);

/// <summary>
/// Splits a Jinja template into text and tag tokens with the settings transformers uses for chat templates:
/// <c>trim_blocks</c> (drop the newline after a block tag), <c>lstrip_blocks</c> (drop indentation before one) and the
/// <c>-</c> whitespace-control markers.
/// </summary>
internal static class JinjaLexer
{
    private static readonly string[] Operators = ["==", "!=", "<=", ">=", "//", "**", "(", ")", "[", "]", "{", "}", ".", ",", ":", "|", "=", "<", ">", "+", "-", "*", "/", "%", "~"];

    public static List<Token> Tokenize(string source)
    {
        var tokens = new List<Token>();
        var i = 0;
        var stripNextText = false; // a preceding "-}}" or "-%}"
        var afterBlock = false;    // trim_blocks: the text right after "%}" loses one leading newline
        while (i < source.Length)
        {
            var open = FindTagStart(source, i);
            var textEnd = open < 0 ? source.Length : open;
            var text = source[i..textEnd];
            if (afterBlock && text.StartsWith('\n')) text = text[1..];
            else if (afterBlock && text.StartsWith("\r\n", StringComparison.Ordinal)) text = text[2..];
            if (stripNextText) text = text.TrimStart();
            if (open >= 0)
            {
                var tagKind = source[open + 1];
                var leftStrip = open + 2 < source.Length && source[open + 2] == '-';
                if (leftStrip) text = text.TrimEnd();
                else if (tagKind is '%' or '#') text = LstripBlock(text, tokens.Count == 0 && i == 0);
            }
            if (text.Length > 0) tokens.Add(new Token(TokenKind.Text, text, i));
            if (open < 0) break;

            var kind = source[open + 1];
            var start = open + 2 + (open + 2 < source.Length && source[open + 2] is '-' or '+' ? 1 : 0);
            if (kind == '#')
            {
                var close = source.IndexOf("#}", start, StringComparison.Ordinal);
                if (close < 0) throw new TemplateSyntaxException("Unclosed comment.", open);
                stripNextText = source[close - 1] == '-';
                afterBlock = true;
                i = close + 2;
                continue;
            }
            tokens.Add(new Token(kind == '{' ? TokenKind.OutputStart : TokenKind.StatementStart, "", open));
            i = LexTag(source, start, kind == '{' ? "}}" : "%}", tokens, out stripNextText);
            tokens.Add(new Token(kind == '{' ? TokenKind.OutputEnd : TokenKind.StatementEnd, "", i));
            afterBlock = kind == '%';
        }
        tokens.Add(new Token(TokenKind.End, "", source.Length));
        return tokens;
    }

    private static int FindTagStart(string source, int from)
    {
        for (var i = source.IndexOf('{', from); i >= 0 && i + 1 < source.Length; i = source.IndexOf('{', i + 1))
        {
            if (source[i + 1] is '{' or '%' or '#') return i;
        }
        return -1;
    }

    /// <summary>lstrip_blocks: spaces and tabs between a line start and a block tag are removed.</summary>
    private static string LstripBlock(string text, bool atTemplateStart)
    {
        var lineStart = text.LastIndexOf('\n');
        var tail = text[(lineStart + 1)..];
        if (tail.Length == 0 || tail.Any(c => c is not (' ' or '\t'))) return text;
        return lineStart >= 0 || atTemplateStart ? text[..(lineStart + 1)] : text;
    }

    private static int LexTag(string source, int i, string close, List<Token> tokens, out bool stripAfter)
    {
        while (true)
        {
            while (i < source.Length && char.IsWhiteSpace(source[i])) i++;
            if (i >= source.Length) throw new TemplateSyntaxException($"Unclosed tag: expected '{close}'.", i);
            if (source[i] == '-' && string.CompareOrdinal(source, i + 1, close, 0, 2) == 0)
            {
                stripAfter = true;
                return i + 3;
            }
            if (string.CompareOrdinal(source, i, close, 0, 2) == 0)
            {
                stripAfter = false;
                return i + 2;
            }
            var c = source[i];
            if (c is '\'' or '"')
            {
                var (value, next) = ReadString(source, i);
                tokens.Add(new Token(TokenKind.String, value, i));
                i = next;
            }
            else if (char.IsAsciiDigit(c))
            {
                var start = i;
                while (i < source.Length && (char.IsAsciiDigit(source[i]) || source[i] == '_')) i++;
                var isFloat = i + 1 < source.Length && source[i] == '.' && char.IsAsciiDigit(source[i + 1]);
                if (isFloat)
                {
                    i++;
                    while (i < source.Length && char.IsAsciiDigit(source[i])) i++;
                }
                tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Integer, source[start..i].Replace("_", "", StringComparison.Ordinal), start));
            }
            else if (char.IsLetter(c) || c == '_')
            {
                var start = i;
                while (i < source.Length && (char.IsLetterOrDigit(source[i]) || source[i] == '_')) i++;
                tokens.Add(new Token(TokenKind.Name, source[start..i], start));
            }
            else
            {
                var op = Operators.FirstOrDefault(o => string.CompareOrdinal(source, i, o, 0, o.Length) == 0)
                         ?? throw new TemplateSyntaxException($"Unexpected character '{c}'.", i);
                tokens.Add(new Token(TokenKind.Operator, op, i));
                i += op.Length;
            }
        }
    }

    private static (string Value, int Next) ReadString(string source, int start)
    {
        var quote = source[start];
        var value = new StringBuilder();
        for (var i = start + 1; i < source.Length; i++)
        {
            var c = source[i];
            if (c == quote) return (value.ToString(), i + 1);
            if (c != '\\' || i + 1 >= source.Length)
            {
                value.Append(c);
                continue;
            }
            var e = source[++i];
            switch (e)
            {
                case 'n': value.Append('\n'); break;
                case 't': value.Append('\t'); break;
                case 'r': value.Append('\r'); break;
                case '\\': value.Append('\\'); break;
                case '\'': value.Append('\''); break;
                case '"': value.Append('"'); break;
                case 'u' when i + 4 < source.Length:
                    value.Append((char)Convert.ToInt32(source.Substring(i + 1, 4), 16));
                    i += 4;
                    break;
                default: value.Append('\\').Append(e); break;
            }
        }
        throw new TemplateSyntaxException("Unterminated string literal.", start);
    }
}
