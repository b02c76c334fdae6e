using Gpud.Engine.Templates;
using System.Globalization;

namespace Gpud.Engine.Templates.Jinja;

/// <summary>Recursive-descent parser for the Jinja subset, with Jinja's operator precedence.</summary>
internal sealed class JinjaParser
{
    private readonly List<Token> _tokens;
    private int _position;

    private JinjaParser(List<Token> tokens) => _tokens = tokens;

    public static IReadOnlyList<Node> Parse(string source)
    {
        var parser = new JinjaParser(JinjaLexer.Tokenize(source));
        var body = parser.ParseBody([]);
        if (parser.Current.Kind != TokenKind.End) throw parser.Error("Unexpected tag.");
        return body;
    }

    private Token Current => _tokens[_position];

    private Token Advance() => _tokens[_position++];

    private TemplateSyntaxException Error(string message) => new(message, Current.Position);

    private bool IsOperator(string op) => Current.Kind == TokenKind.Operator && Current.Value == op;

    private bool IsName(string name) => Current.Kind == TokenKind.Name && Current.Value == name;

    private void Expect(TokenKind kind, string? value = null)
    {
        if (Current.Kind != kind || (value is not null && Current.Value != value))
            throw Error($"Expected {value ?? kind.ToString()} but found '{Current.Value}' ({Current.Kind}).");
        _position++;
    }

    private string ExpectName()
    {
        if (Current.Kind != TokenKind.Name) throw Error($"Expected a name but found '{Current.Value}'.");
        return Advance().Value;
    }

    /// <summary>Nodes until one of <paramref name="terminators"/> opens a statement (left unconsumed).</summary>
    private List<Node> ParseBody(string[] terminators)
    {
        var nodes = new List<Node>();
        while (true)
        {
            switch (Current.Kind)
            {
                case TokenKind.End:
                    if (terminators.Length > 0) throw Error($"Missing {{% {terminators[0]} %}}.");
                    return nodes;
                case TokenKind.Text:
                    nodes.Add(new TextNode(Advance().Value));
                    break;
                case TokenKind.OutputStart:
                    Advance();
                    nodes.Add(new OutputNode(ParseExpression()));
                    Expect(TokenKind.OutputEnd);
                    break;
                case TokenKind.StatementStart:
                    var keyword = _tokens[_position + 1];
                    if (keyword.Kind == TokenKind.Name && terminators.Contains(keyword.Value)) return nodes;
                    Advance();
                    nodes.Add(ParseStatement());
                    break;
                default:
                    throw Error($"Unexpected '{Current.Value}'.");
            }
        }
    }

    private Node ParseStatement()
    {
        var keyword = ExpectName();
        switch (keyword)
        {
            case "if":
                return ParseIf();
            case "for":
                return ParseFor();
            case "set":
                return ParseSet();
            case "macro":
                return ParseMacro();
            case "break" or "continue":
                Expect(TokenKind.StatementEnd);
                return new LoopControlNode(keyword == "break");
            case "generation":
                // transformers' {% generation %} marks assistant text for masks; it renders its body unchanged.
                Expect(TokenKind.StatementEnd);
                var body = ParseBody(["endgeneration"]);
                EndTag("endgeneration");
                return new IfNode([(new Literal(true), body)], null);
            default:
                throw Error($"Unsupported statement '{keyword}'.");
        }
    }

    private void EndTag(string name)
    {
        Expect(TokenKind.StatementStart);
        Expect(TokenKind.Name, name);
        Expect(TokenKind.StatementEnd);
    }

    private IfNode ParseIf()
    {
        var branches = new List<(Expr, IReadOnlyList<Node>)>();
        var condition = ParseExpression();
        Expect(TokenKind.StatementEnd);
        IReadOnlyList<Node>? otherwise = null;
        while (true)
        {
            var body = ParseBody(["elif", "else", "endif"]);
            branches.Add((condition, body));
            Expect(TokenKind.StatementStart);
            var keyword = ExpectName();
            if (keyword == "elif")
            {
                condition = ParseExpression();
                Expect(TokenKind.StatementEnd);
                continue;
            }
            Expect(TokenKind.StatementEnd);
            if (keyword == "else")
            {
                otherwise = ParseBody(["endif"]);
                EndTag("endif");
            }
            return new IfNode(branches, otherwise);
        }
    }

    private ForNode ParseFor()
    {
        var targets = new List<string> { ExpectName() };
        while (IsOperator(","))
        {
            Advance();
            targets.Add(ExpectName());
        }
        Expect(TokenKind.Name, "in");
        var iterable = ParseExpression(allowConditional: false);
        Expr? filter = null;
        if (IsName("if"))
        {
            Advance();
            filter = ParseExpression(allowConditional: false);
        }
        Expect(TokenKind.StatementEnd);
        var body = ParseBody(["else", "endfor"]);
        IReadOnlyList<Node>? otherwise = null;
        Expect(TokenKind.StatementStart);
        if (ExpectName() == "else")
        {
            Expect(TokenKind.StatementEnd);
            otherwise = ParseBody(["endfor"]);
            EndTag("endfor");
        }
        else
        {
            Expect(TokenKind.StatementEnd);
        }
        return new ForNode(targets, iterable, filter, body, otherwise);
    }

    private SetNode ParseSet()
    {
        var name = ExpectName();
        string? attribute = null;
        if (IsOperator("."))
        {
            Advance();
            attribute = ExpectName();
        }
        if (IsOperator("="))
        {
            Advance();
            var value = ParseExpression();
            Expect(TokenKind.StatementEnd);
            return new SetNode(name, attribute, value, null);
        }
        Expect(TokenKind.StatementEnd);
        var body = ParseBody(["endset"]);
        EndTag("endset");
        return new SetNode(name, attribute, null, body);
    }

    private MacroNode ParseMacro()
    {
        var name = ExpectName();
        Expect(TokenKind.Operator, "(");
        var parameters = new List<(string, Expr?)>();
        while (!IsOperator(")"))
        {
            var parameter = ExpectName();
            Expr? fallback = null;
            if (IsOperator("="))
            {
                Advance();
                fallback = ParseExpression();
            }
            parameters.Add((parameter, fallback));
            if (!IsOperator(")")) Expect(TokenKind.Operator, ",");
        }
        Advance();
        Expect(TokenKind.StatementEnd);
        var body = ParseBody(["endmacro"]);
        EndTag("endmacro");
        return new MacroNode(name, parameters, body);
    }

    private Expr ParseExpression(bool allowConditional = true)
    {
        var value = ParseOr();
        if (allowConditional && IsName("if"))
        {
            Advance();
            var condition = ParseOr();
            Expr? otherwise = null;
            if (IsName("else"))
            {
                Advance();
                otherwise = ParseExpression();
            }
            return new ConditionalExpr(condition, value, otherwise);
        }
        return value;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (IsName("or"))
        {
            Advance();
            left = new BinaryExpr("or", left, ParseAnd());
        }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (IsName("and"))
        {
            Advance();
            left = new BinaryExpr("and", left, ParseNot());
        }
        return left;
    }

    private Expr ParseNot()
    {
        if (IsName("not"))
        {
            Advance();
            return new UnaryExpr("not", ParseNot());
        }
        return ParseComparison();
    }

    private Expr ParseComparison()
    {
        var left = ParseConcat();
        while (true)
        {
            if (Current.Kind == TokenKind.Operator && Current.Value is "==" or "!=" or "<" or ">" or "<=" or ">=")
            {
                var op = Advance().Value;
                left = new BinaryExpr(op, left, ParseConcat());
            }
            else if (IsName("in"))
            {
                Advance();
                left = new BinaryExpr("in", left, ParseConcat());
            }
            else if (IsName("not") && _tokens[_position + 1] is { Kind: TokenKind.Name, Value: "in" })
            {
                _position += 2;
                left = new UnaryExpr("not", new BinaryExpr("in", left, ParseConcat()));
            }
            else if (IsName("is"))
            {
                Advance();
                var negated = false;
                if (IsName("not"))
                {
                    Advance();
                    negated = true;
                }
                var test = ExpectName();
                var arguments = new List<Expr>();
                if (IsOperator("("))
                {
                    var (positional, _) = ParseArguments();
                    arguments.AddRange(positional);
                }
                else if (Current.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float)
                {
                    arguments.Add(ParsePrimary());
                }
                left = new TestExpr(left, test, arguments, negated);
            }
            else
            {
                return left;
            }
        }
    }

    private Expr ParseConcat()
    {
        var left = ParseAdditive();
        while (IsOperator("~"))
        {
            Advance();
            left = new BinaryExpr("~", left, ParseAdditive());
        }
        return left;
    }

    private Expr ParseAdditive()
    {
        var left = ParseMultiplicative();
        while (IsOperator("+") || IsOperator("-"))
        {
            var op = Advance().Value;
            left = new BinaryExpr(op, left, ParseMultiplicative());
        }
        return left;
    }

    private Expr ParseMultiplicative()
    {
        var left = ParseUnary();
        while (Current.Kind == TokenKind.Operator && Current.Value is "*" or "/" or "//" or "%")
        {
            var op = Advance().Value;
            left = new BinaryExpr(op, left, ParseUnary());
        }
        return left;
    }

    private Expr ParseUnary()
    {
        if (IsOperator("-") || IsOperator("+"))
        {
            var op = Advance().Value;
            return new UnaryExpr(op, ParseUnary());
        }
        return ParsePostfix(ParsePrimary());
    }

    private Expr ParsePostfix(Expr expr)
    {
        while (true)
        {
            if (IsOperator("."))
            {
                Advance();
                expr = new AttributeExpr(expr, ExpectName());
            }
            else if (IsOperator("["))
            {
                Advance();
                expr = ParseSubscript(expr);
            }
            else if (IsOperator("("))
            {
                var (positional, named) = ParseArguments();
                expr = new CallExpr(expr, positional, named);
            }
            else if (IsOperator("|"))
            {
                Advance();
                var name = ExpectName();
                var (positional, named) = IsOperator("(") ? ParseArguments() : ([], []);
                expr = new FilterExpr(expr, name, positional, named);
            }
            else
            {
                return expr;
            }
        }
    }

    private Expr ParseSubscript(Expr target)
    {
        Expr? start = null, stop = null, step = null;
        if (!IsOperator(":")) start = ParseExpression();
        if (!IsOperator(":"))
        {
            Expect(TokenKind.Operator, "]");
            return new IndexExpr(target, start!);
        }
        Advance();
        if (!IsOperator(":") && !IsOperator("]")) stop = ParseExpression();
        if (IsOperator(":"))
        {
            Advance();
            if (!IsOperator("]")) step = ParseExpression();
        }
        Expect(TokenKind.Operator, "]");
        return new SliceExpr(target, start, stop, step);
    }

    private (List<Expr> Positional, List<(string, Expr)> Named) ParseArguments()
    {
        Expect(TokenKind.Operator, "(");
        var positional = new List<Expr>();
        var named = new List<(string, Expr)>();
        while (!IsOperator(")"))
        {
            if (Current.Kind == TokenKind.Name && _tokens[_position + 1] is { Kind: TokenKind.Operator, Value: "=" })
            {
                var name = Advance().Value;
                Advance();
                named.Add((name, ParseExpression()));
            }
            else
            {
                positional.Add(ParseExpression());
            }
            if (!IsOperator(")")) Expect(TokenKind.Operator, ",");
        }
        Advance();
        return (positional, named);
    }

    private Expr ParsePrimary()
    {
        var token = Advance();
        switch (token.Kind)
        {
            case TokenKind.String:
                var text = token.Value;
                while (Current.Kind == TokenKind.String) text += Advance().Value; // adjacent literals concatenate
                return new Literal(text);
            case TokenKind.Integer:
                return new Literal(long.Parse(token.Value, CultureInfo.InvariantCulture));
            case TokenKind.Float:
                return new Literal(double.Parse(token.Value, CultureInfo.InvariantCulture));
            case TokenKind.Name:
                return token.Value switch
                {
                    "true" or "True" => new Literal(true),
                    "false" or "False" => new Literal(false),
                    "none" or "None" => new Literal(null),
                    _ => new NameExpr(token.Value),
                };
            case TokenKind.Operator when token.Value == "(":
                var inner = ParseExpression();
                if (IsOperator(","))
                {
                    var items = new List<Expr> { inner };
                    while (IsOperator(","))
                    {
                        Advance();
                        if (IsOperator(")")) break;
                        items.Add(ParseExpression());
                    }
                    Expect(TokenKind.Operator, ")");
                    return new ListExpr(items);
                }
                Expect(TokenKind.Operator, ")");
                return inner;
            case TokenKind.Operator when token.Value == "[":
                var list = new List<Expr>();
                while (!IsOperator("]"))
                {
                    list.Add(ParseExpression());
                    if (!IsOperator("]")) Expect(TokenKind.Operator, ",");
                }
                Advance();
                return new ListExpr(list);
            case TokenKind.Operator when token.Value == "{":
                var pairs = new List<(Expr, Expr)>();
                while (!IsOperator("}"))
                {
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    pairs.Add((key, ParseExpression()));
                    if (!IsOperator("}")) Expect(TokenKind.Operator, ",");
                }
                Advance();
                return new DictExpr(pairs);
            default:
                _position--;
                throw Error($"Unexpected '{token.Value}' in an expression.");
        }
    }
}
