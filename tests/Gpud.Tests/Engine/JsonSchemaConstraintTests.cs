using System.Text;
using System.Text.Json;
using Gpud.Engine.Generation;
using Gpud.Engine.Generation.Constraints;
using Gpud.Engine.Models;
using Gpud.Engine.Tokenization;
using Gpud.Tests.Infrastructure;
using static TorchSharp.torch;

namespace Gpud.Tests.Engine;

public sealed class JsonSchemaConstraintTests
{
    private static readonly string TinyModel = Repo.File("tests/fixtures/models/gpud-tiny");

    private const string Person = """
        {"type": "object", "additionalProperties": false, "required": ["name", "age", "tags", "role", "nick"],
         "properties": {
           "name": {"type": "string", "description": "full name"},
           "age": {"type": "integer"},
           "tags": {"type": "array", "items": {"type": "string"}},
           "role": {"enum": ["admin", "user"]},
           "nick": {"type": ["string", "null"]}}}
        """;

    private static JsonSchema Compile(string schema) => JsonSchema.Compile(JsonDocument.Parse(schema).RootElement);

    /// <summary>How far the schema's grammar reads the text: (bytes accepted, complete at the end).</summary>
    private static (int Accepted, bool Complete) Read(string schema, string text) => Grammars.Read(Compile(schema).Start, text);

    private static void AssertReads(string schema, string text) => Assert.Equal((Encoding.UTF8.GetByteCount(text), true), Read(schema, text));

    /// <summary>The text is refused at the byte just after <paramref name="acceptedPrefix"/>.</summary>
    private static void AssertRefusedAfter(string schema, string text, string acceptedPrefix)
    {
        Assert.StartsWith(acceptedPrefix, text, StringComparison.Ordinal);
        Assert.Equal((Encoding.UTF8.GetByteCount(acceptedPrefix), false), Read(schema, text));
    }

    /// <summary>
    /// Values of one property <c>p</c> of schema <paramref name="value"/> (with <paramref name="quoted"/>, the characters
    /// of a string, written inside quotes): every one of <paramref name="valid"/> reads, and every
    /// <c>value{arrow}prefix</c> of <paramref name="invalid"/> is refused right after the prefix.
    /// </summary>
    private static void AssertValues(string value, string valid, string invalid, char separator = '|', string arrow = "=>", bool quoted = false)
    {
        var schema = $$"""{"type": "object", "properties": {"p": {{value}}}, "required": ["p"]}""";
        string Text(string v) => quoted ? $"{{\"p\":\"{v}" : $"{{\"p\":{v}";
        foreach (var v in valid.Split(separator)) AssertReads(schema, Text(v) + (quoted ? "\"}" : "}"));
        foreach (var (v, prefix) in invalid.Split(separator).Select(r => (r[..r.IndexOf(arrow, StringComparison.Ordinal)], r[(r.IndexOf(arrow, StringComparison.Ordinal) + arrow.Length)..])))
            AssertRefusedAfter(schema, Text(v) + (quoted ? "\"}" : "}"), Text(prefix));
    }

    [Theory]
    [InlineData("""{"name":"Zoë 🙂","age":42,"tags":["a","b\"c"],"role":"admin","nick":null}""")]
    [InlineData("""{"name":"","age":-7,"tags":[],"role":"user","nick":"Z"}""")]
    [InlineData("{\n  \"name\": \"Ann\",\n  \"age\": 0,\n  \"tags\": [ \"x\" ],\n  \"role\": \"user\",\n  \"nick\": \"\\u00e9\"\n}")]
    public void Instances_of_the_schema_are_read_to_completion(string text) => AssertReads(Person, text);

    [Theory]
    [InlineData("""{"age":1""", "{\"")] // properties come in the schema's order
    [InlineData("""{"name":"A","age":4.5""", """{"name":"A","age":4""")]
    [InlineData("""{"name":"A","age":"4""", """{"name":"A","age":""")]
    [InlineData("""{"name":"A","age":4,"tags":[1]""", """{"name":"A","age":4,"tags":[""")]
    [InlineData("""{"name":"A","age":4,"tags":[],"role":"guest""", "{\"name\":\"A\",\"age\":4,\"tags\":[],\"role\":\"")]
    [InlineData("""{"name":"A","age":4,"tags":[],"role":"user","nick":0""", """{"name":"A","age":4,"tags":[],"role":"user","nick":""")]
    [InlineData("""{"name":"A","age":4}""", """{"name":"A","age":4""")] // required properties cannot be left out
    [InlineData("""{"name":"A","age":4,"tags":[],"role":"user","nick":null,"x":1}""", """{"name":"A","age":4,"tags":[],"role":"user","nick":null""")]
    [InlineData("""{"name":"A","age":4,"tags":[],"role":"user","nick":null} """, """{"name":"A","age":4,"tags":[],"role":"user","nick":null}""")]
    [InlineData("""{"name":"A","age":01""", """{"name":"A","age":0""")]
    public void Text_that_breaks_the_schema_is_refused_at_its_first_wrong_byte(string text, string acceptedPrefix) =>
        AssertRefusedAfter(Person, text, acceptedPrefix);

    [Fact]
    public void Optional_properties_may_be_left_out_but_keep_their_order()
    {
        const string schema = """{"type": "object", "properties": {"a": {"type": "integer"}, "ab": {"type": "integer"}, "c": {"type": "boolean"}}, "required": ["ab"]}""";
        AssertReads(schema, """{"ab":1}""");
        AssertReads(schema, """{"a":1,"ab":2,"c":true}""");
        AssertReads(schema, """{"ab":1,"c":false}""");
        AssertRefusedAfter(schema, """{"c":true}""", "{\""); // "ab" is required before "c"
        AssertRefusedAfter(schema, """{"a":1}""", """{"a":1""");
        AssertRefusedAfter(schema, """{}""", """{""");
        AssertRefusedAfter(schema, """{"ab":1,"a":2}""", "{\"ab\":1,\""); // nothing may come back before "ab"
    }

    [Fact]
    public void AnyOf_alternatives_are_told_apart_by_the_text_and_refs_may_recurse()
    {
        const string pets = """
            {"type": "object", "required": ["pet"], "properties": {"pet": {"anyOf": [
              {"type": "object", "properties": {"cat": {"type": "string"}}, "required": ["cat"], "additionalProperties": false},
              {"type": "object", "properties": {"car": {"type": "integer"}}, "required": ["car"], "additionalProperties": false},
              {"type": "null"}]}}}
            """;
        AssertReads(pets, """{"pet":{"cat":"Tom"}}""");
        AssertReads(pets, """{"pet":{"car":3}}""");
        AssertReads(pets, """{"pet":null}""");
        AssertRefusedAfter(pets, """{"pet":{"cat":3}}""", """{"pet":{"cat":""");
        AssertRefusedAfter(pets, """{"pet":{"cow":3}}""", """{"pet":{"c""");

        const string tree = """
            {"$defs": {"node": {"type": "object", "required": ["value", "children"], "additionalProperties": false,
              "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}},
             "$ref": "#/$defs/node"}
            """;
        AssertReads(tree, """{"value":1,"children":[{"value":2,"children":[]},{"value":3,"children":[{"value":4,"children":[]}]}]}""");
        AssertRefusedAfter(tree, """{"value":1,"children":[{"value":2}]}""", """{"value":1,"children":[{"value":2""");

        // Pydantic v1 describes a reference by wrapping it in a one-schema allOf.
        const string wrapped = """
            {"definitions": {"Color": {"enum": ["red", "blue"]}}, "type": "object", "required": ["color"],
             "properties": {"color": {"title": "Color", "description": "paint", "allOf": [{"$ref": "#/definitions/Color"}]}}}
            """;
        AssertReads(wrapped, """{"color":"blue"}""");
        AssertRefusedAfter(wrapped, """{"color":"green"}""", "{\"color\":\"");

        // Declared structure nests as deep as the text goes (free JSON stops at MaxDepth, where a scalar can stand in);
        // two states 5000 levels deep compare without recursion.
        var deep = string.Concat(Enumerable.Repeat("""{"value":1,"children":[""", 5000));
        AssertReads(tree, deep + """{"value":0,"children":[]}""" + string.Concat(Enumerable.Repeat("]}", 5000)));
        var schema = Compile(tree);
        var (one, two) = (schema.Start, schema.Start);
        foreach (var b in Encoding.UTF8.GetBytes(deep)) Assert.True(one.Advance(b) && two.Advance(b));
        Assert.Equal(one, two);
        var free = """{"type": "object", "properties": {"any": {}}, "required": ["any"]}""";
        AssertRefusedAfter(free, """{"any":""" + new string('[', JsonSchema.MaxDepth + 1), """{"any":""" + new string('[', JsonSchema.MaxDepth - 1));
    }

    [Fact]
    public void A_schema_as_Pydantic_writes_it_reads_what_Pydantic_writes()
    {
        // scripts/fixtures/make_schema_fixtures.py: Pydantic v2's schema of a model with its common field types, and
        // instances Pydantic dumped and validated.
        using var fixture = JsonDocument.Parse(File.ReadAllText(Repo.File("tests/fixtures/schemas/pydantic_order.json")));
        var schema = fixture.RootElement.GetProperty("schema").GetRawText();
        var instances = fixture.RootElement.GetProperty("instances").EnumerateArray().Select(i => i.GetString()!).ToList();
        Assert.Equal(2, instances.Count);
        foreach (var instance in instances) AssertReads(schema, instance);
        // Each change is refused where the schema first rules it out: 16 is no multiple of 5 (refused at its end), "+." is
        // no decimal (at the closing quote), a cat has no "good".
        foreach (var (from, to, refusedAt) in new[] { ("\"qty\":15", "\"qty\":16", 8), ("\"amount\":\"12.50\"", "\"amount\":\"+.\"", 12), ("\"lives\":9", "\"good\":true", 1) })
        {
            var broken = instances[0].Replace(from, to, StringComparison.Ordinal);
            var at = broken.IndexOf(to, StringComparison.Ordinal) + refusedAt;
            AssertRefusedAfter(schema, broken, broken[..at]);
        }
    }

    [Theory]
    [InlineData("""{"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2, "maxItems": 2}""", "[1,\"a\"]", "[\"a\"]=>[|[1,\"a\",2]=>[1,\"a\"|[1]=>[1")] // Pydantic's tuple[int, str]
    [InlineData("""{"type": "array", "items": [{"type": "boolean"}], "additionalItems": false}""", "[]|[true]", "[true,1]=>[true|[1]=>[")] // draft 7's tuple
    [InlineData("""{"type": "array", "prefixItems": [{"const": "x"}], "items": {"type": "integer"}}""", "[\"x\",1,2]|[\"x\"]|[]", "[\"x\",\"y\"]=>[\"x\",|[2]=>[")]
    [InlineData("""{"type": "array", "prefixItems": [{"type": "integer"}], "items": false, "minItems": 1}""", "[3]", "[]=>[|[3,4]=>[3")]
    public void Tuples_give_each_position_its_own_schema(string array, string valid, string invalid)
    {
        AssertValues(array, valid, invalid);
    }

    [Fact]
    public void OneOf_with_branches_that_exclude_each_other_is_a_choice_of_them()
    {
        // Pydantic's discriminated union: $refs to objects told apart by a required 'kind' literal, and its annotation.
        const string pets = """
            {"type": "object", "required": ["pet", "id"], "properties": {
              "pet": {"oneOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}],
                      "discriminator": {"propertyName": "kind", "mapping": {"cat": "#/$defs/Cat", "dog": "#/$defs/Dog"}}},
              "id": {"oneOf": [{"type": "string"}, {"type": "integer"}, {"const": null}]}},
             "$defs": {
              "Cat": {"type": "object", "properties": {"kind": {"const": "cat", "type": "string"}, "lives": {"type": "integer"}}, "required": ["kind", "lives"]},
              "Dog": {"type": "object", "properties": {"kind": {"enum": ["dog"]}, "good": {"type": "boolean"}}, "required": ["kind", "good"]}}}
            """;
        AssertReads(pets, """{"pet":{"kind":"cat","lives":9},"id":"c-1"}""");
        AssertReads(pets, """{"pet":{"kind":"dog","good":true},"id":7}""");
        AssertReads(pets, """{"pet":{"kind":"dog","good":false},"id":null}""");
        AssertRefusedAfter(pets, """{"pet":{"kind":"cat","good":true},"id":1}""", "{\"pet\":{\"kind\":\"cat\",\"");
        AssertRefusedAfter(pets, """{"pet":{"kind":"cow","good":true},"id":1}""", """{"pet":{"kind":"c""");
    }

    [Fact]
    public void Item_counts_free_maps_any_values_and_odd_keys_follow_the_schema()
    {
        const string counted = """{"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 3}}, "required": ["xs"]}""";
        AssertReads(counted, """{"xs":[1,2.5e3]}""");
        AssertReads(counted, """{"xs":[1,2,3]}""");
        AssertRefusedAfter(counted, """{"xs":[1]}""", """{"xs":[1""");
        AssertRefusedAfter(counted, """{"xs":[1,2,3,4]}""", """{"xs":[1,2,3""");

        const string map = """{"type": "object", "properties": {"scores": {"type": "object", "additionalProperties": {"type": "number"}}}, "required": ["scores"]}""";
        AssertReads(map, """{"scores":{"x":1,"y z":-0.5}}""");
        AssertReads(map, """{"scores":{}}""");
        AssertRefusedAfter(map, """{"scores":{"x":"1"}}""", """{"scores":{"x":""");

        const string anything = """{"type": "object", "properties": {"any": {}, "first name": {"const": "Zoë"}, "q\"uote": {"type": "boolean"}}, "required": ["any", "first name", "q\"uote"]}""";
        AssertReads(anything, """{"any":[{"a":[null,true,"s",{}]},-1e-3],"first name":"Zoë","q\"uote":false}""");
        AssertRefusedAfter(anything, """{"any":1,"first name":"Zoe""", """{"any":1,"first name":"Zo""");
    }

    [Theory]
    [InlineData("""{"type": "integer", "minimum": 0, "maximum": 10}""", "0 7 10", "11:1 -1: -0: 01:0 5.0:5 1e1:1")]
    [InlineData("""{"type": "integer", "minimum": -9007199254740991, "maximum": 9007199254740991}""", "9007199254740991 -9007199254740991 42", "9007199254740992:900719925474099 10000000000000000:1000000000000000")]
    [InlineData("""{"type": "integer", "exclusiveMinimum": 2.5, "exclusiveMaximum": 5}""", "3 4", "2: 5: 45:4")]
    [InlineData("""{"type": "number", "exclusiveMinimum": 0, "maximum": 1}""", "0.5 1 1.0 0.001 1.000", "0:0 1.01:1.0 1.5:1. 2: -0.5: 1e0:1")]
    [InlineData("""{"type": "number", "minimum": -1.5, "maximum": -0.25}""", "-1.5 -1 -0.25 -0.3", "-0.2:-0.2 -1.6:-1. 0: -2:-")]
    [InlineData("""{"type": "integer", "multipleOf": 5}""", "0 5 -15 1000000", "7:7 12:12 -3:-3 1.0:1")]
    [InlineData("""{"type": "integer", "multipleOf": 5, "minimum": 3, "maximum": 27}""", "5 10 25", "0: 30: 4: 26:2")]
    [InlineData("""{"type": "integer", "multipleOf": 1.5}""", "3 0 -6", "1:1 4:4 1.5:1")] // integers that are multiples of 1.5: those of 3
    [InlineData("""{"type": "number", "multipleOf": 0.25}""", "0.25 -1.5 3 2.750", "0.3:0. 0.125:0. 1e2:1")]
    [InlineData("""{"type": "number", "multipleOf": 0.01, "exclusiveMinimum": 0, "maximum": 1}""", "0.01 0.99 1 1.00", "0.001:0.0 0:0 1.01:1.0")]
    [InlineData("""{"type": "number", "multipleOf": 2.5, "exclusiveMinimum": 2.5, "exclusiveMaximum": 10}""", "5 7.5 5.0", "2.5: 10: 6:")]
    public void Numbers_are_kept_inside_their_minimum_and_maximum_and_on_their_step(string number, string inRange, string refused)
    {
        // value:prefix — the text is refused right after the prefix (a number refused at its end stops before the '}').
        AssertValues(number, inRange, refused, ' ', ":");
    }

    [Fact]
    public void An_array_without_bounds_reads_its_items_in_one_state_so_their_tokens_are_walked_once()
    {
        var schema = Compile(Person);
        JsonSchemaGrammar After(string prefix) => Grammars.After(schema.Start, prefix);
        Assert.Equal(After("""{"name":"A","age":4,"tags":["x"""), After("""{"name":"A","age":4,"tags":["x","y", "zz"""));
        Assert.NotEqual(After("""{"name":"A"""), After("""{"name":"A","age":4,"tags":["x"""));
    }

    [Fact]
    public void String_lengths_count_characters_and_a_lower_bound_alone_stops_counting_once_met()
    {
        const string schema = """{"type": "object", "properties": {"s": {"type": "string", "minLength": 2, "maxLength": 3}}, "required": ["s"]}""";
        AssertReads(schema, """{"s":"ab"}""");
        AssertReads(schema, """{"s":"é🙂x"}"""); // 3 characters in 7 bytes
        AssertReads(schema, """{"s":"a\nb"}"""); // an escape is one character
        AssertRefusedAfter(schema, """{"s":"a"}""", """{"s":"a""");
        AssertRefusedAfter(schema, """{"s":"abcd"}""", """{"s":"abc""");
        AssertRefusedAfter(schema, """{"s":"abc🙂"}""", """{"s":"abc""");
        AssertRefusedAfter(schema, """{"s":"\u00e9x"}""", "{\"s\":\"\\"); // no \u escapes in a counted string

        var nonEmpty = Compile("""{"type": "object", "properties": {"s": {"type": "string", "minLength": 1}}, "required": ["s"]}""");
        JsonSchemaGrammar After(string prefix) => Grammars.After(nonEmpty.Start, prefix);
        Assert.Equal(After("""{"s":"x"""), After("""{"s":"xyz 🙂 long"""));
        Assert.NotEqual(After("{\"s\":\""), After("""{"s":"x"""));
    }

    [Theory]
    [InlineData("^[0-9]{5}$", "12345", "1234:1234|123456:12345|12a:12")]
    [InlineData("^\\d{3}-\\d{4}$", "555-1234", "5551234:555|555-12:555-12")]
    [InlineData("abc", "abc|xxabcxx", "ab:ab")] // unanchored: anywhere in the string
    [InlineData("^(cat|dog)s?$", "cat|cats|dog", "cow:c|catss:cats")]
    [InlineData("^[A-Z][a-z]+( [A-Z][a-z]+)*$", "Ada|Ada Lovelace", "ada:|Ada :Ada ")]
    [InlineData("^[^0-9\\s]{2}$", "é🙂|ab", "a1:a|a b:a")] // two code points, neither a digit nor a space
    [InlineData("^a\\nb$", "a\\nb", "ab:a")] // the JSON escape \n is the character the pattern wants
    [InlineData("^.+@.+\\..+$", "a@b.c", "a@b:a@b")]
    public void Patterns_are_matched_character_by_character(string pattern, string matching, string refused)
    {
        AssertValues($$"""{"type": "string", "pattern": {{JsonSerializer.Serialize(pattern)}}}""", matching, refused, arrow: ":", quoted: true);
    }

    [Theory]
    [InlineData("date", "2024-02-29|2000-02-29|1999-12-31", "2023-02-29=>2023-02-2|2100-02-29=>2100-02-2|2024-13-01=>2024-1|2024-04-31=>2024-04-3")]
    [InlineData("date-time", "2024-11-23T19:44:40Z|2024-11-23T19:44:40.123+01:00", "2024-11-23 19:44:40Z=>2024-11-23|2024-11-23T24:00:00Z=>2024-11-23T2")]
    [InlineData("time", "23:59:59Z|00:00:00-05:30", "23:59:59=>23:59:59")]
    [InlineData("uuid", "123e4567-e89b-12d3-a456-426614174000", "123e4567e89b=>123e4567|123e4567-e89b-12d3-a456-42661417400=>123e4567-e89b-12d3-a456-42661417400")]
    [InlineData("email", "ann.lee+x@mail.example.com|a@b.co", "ann..lee@x.com=>ann.|a@b=>a@b|a@-b.com=>a@")]
    [InlineData("ipv4", "192.168.0.1|255.255.255.255|0.0.0.0", "256.1.1.1=>25|1.2.3=>1.2.3|01.2.3.4=>0")]
    [InlineData("ipv6", "2001:db8::1|::1|::|fe80::|1:2:3:4:5:6:7:8|1:2:3:4:5:6:7::|1::8|ABCD:ef01::2:3", "2001:db8::1::2=>2001:db8::1:|1:2:3:4:5:6:7:8:9=>1:2:3:4:5:6:7:8|12345::=>1234|:1=>:|g::=>")]
    [InlineData("hostname", "localhost|api.example.com|a-1.b2.xn--p1ai|123.example", "-a.com=>|a-.com=>a-|a..b=>a.|a_b=>a")]
    [InlineData("uri", "https://example.com/a/b?x=1#top|mailto:ann@example.com|urn:isbn:0451450523|http://u:pw@host:8080/p%20q|file:///etc/hosts", "example.com=>example.com|http://a b=>http://a|1http:=>|http://x/%zz=>http://x/%")]
    [InlineData("duration", "P3Y6M4DT12H30M5S|P1W|PT0S|P1D|PT36H|P2M10D", "P=>P|PT=>PT|P1H=>P1|P1W2D=>P1W|P1DT=>P1DT|P1.5D=>P1")]
    public void Formats_are_enforced_as_their_validators_check_them(string format, string valid, string invalid)
    {
        AssertValues($$"""{"type": "string", "format": "{{format}}"}""", valid, invalid, quoted: true);
    }

    [Fact]
    public void A_hostname_has_labels_of_at_most_63_characters_and_at_most_253_in_all()
    {
        const string schema = """{"type": "object", "properties": {"h": {"type": "string", "format": "hostname"}}, "required": ["h"]}""";
        var label = new string('a', 63);
        var longest = string.Join('.', label, label, label, new string('b', 61)); // 253 characters
        AssertReads(schema, $$"""{"h":"{{longest}}"}""");
        AssertRefusedAfter(schema, $$"""{"h":"{{longest}}b"}""", $$"""{"h":"{{longest}}""");
        AssertRefusedAfter(schema, $$"""{"h":"{{label}}a.com"}""", $$"""{"h":"{{label}}""");
    }

    [Fact]
    public void A_maxLength_leaves_room_for_the_pattern_to_finish()
    {
        const string schema = """{"type": "object", "properties": {"e": {"type": "string", "format": "email", "maxLength": 20}}, "required": ["e"]}""";
        AssertReads(schema, """{"e":"abcdefghijklmnop@a.b"}"""); // 20 characters
        AssertRefusedAfter(schema, """{"e":"abcdefghijklmnopq@b.c"}""", """{"e":"abcdefghijklmnop"""); // a 17th character leaves 3: "@x.y" needs 4
        AssertRefusedAfter(schema, """{"e":"abcdefghijklmnop@ab.c"}""", """{"e":"abcdefghijklmnop@a""");
    }

    [Theory]
    [InlineData("""{"type": "string", "pattern": "^(ab|cdef)$", "minLength": 3}""", "cdef", "ab=>|cde=>cde")] // "ab" could never reach 3
    [InlineData("""{"type": "string", "format": "email", "maxLength": 9, "minLength": 8}""", "ab@cd.ef|a@bcd.efg", "a@b.cd=>a@b.cd|ab@cd.efgh=>ab@cd.efg")]
    // Lengths with gaps: from "a" the matches have 3, 5, 6, … characters, never 4, so with exactly 4 allowed 'a' is a
    // dead end from the start; after "de", so is 'a' (5 or more).
    [InlineData("""{"type": "string", "pattern": "^(abc|de)+$", "minLength": 4, "maxLength": 4}""", "dede", "abcde=>|deabc=>de")]
    [InlineData("""{"type": "string", "pattern": "^(ab)+$", "minLength": 3, "maxLength": 5}""", "abab", "ab=>ab|ababab=>abab")]
    public void A_minLength_and_a_pattern_are_met_together(string value, string valid, string invalid) => AssertValues(value, valid, invalid, quoted: true);

    [Theory]
    [InlineData("^(?=.*\\d)(?=.*[A-Z]).{6,8}$", "abc1Def|ABCDEF12|a1B.....", "abcdefg1A:abcdef|abc1def:abc1def|aB1:aB1")]
    [InlineData("^(?=.{1,10}$)[a-z]+(\\.[a-z]+)*$", "a.b|abcdefghij", "abcdefghijk:abcdefghij|abcdefghi.x:abcdefghi")]
    [InlineData("^(?=ab)", "ab|abc", "ba:|a:a")]
    [InlineData("^(?!^[-+.]*$)[+-]?0*\\d*\\.?\\d*$", "12.50|-3|.5|0|+007", "-:-|+.:+.|:|1a:1")] // Pydantic's Decimal
    [InlineData("^(?!abc)[a-z]+$", "abd|ab|xyz", "abc:ab|abcd:ab")]
    public void Lookaheads_after_a_leading_caret_must_match_as_well(string pattern, string matching, string refused)
    {
        AssertValues($$"""{"type": "string", "pattern": {{JsonSerializer.Serialize(pattern)}}}""", matching, refused, arrow: ":", quoted: true);
    }

    [Fact]
    public void Zods_hostname_schema_is_enforced()
    {
        const string schema = """{"type": "object", "properties": {"h": {"type": "string", "format": "hostname", "pattern": "^(?=.{1,253}\\.?$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[-0-9a-zA-Z]{0,61}[0-9a-zA-Z])?)*\\.?$"}}, "required": ["h"]}""";
        AssertReads(schema, """{"h":"api.example.com"}""");
        AssertRefusedAfter(schema, """{"h":"api-.com"}""", """{"h":"api-""");
    }

    [Fact]
    public void A_format_and_a_pattern_must_both_match()
    {
        const string schema = """{"type": "object", "properties": {"d": {"type": "string", "format": "date", "pattern": "^2024-"}}, "required": ["d"]}""";
        AssertReads(schema, """{"d":"2024-05-06"}""");
        AssertRefusedAfter(schema, """{"d":"2023-05-06"}""", """{"d":"202""");
    }

    [Fact]
    public void A_pattern_and_a_length_hold_together_and_a_pattern_takes_no_unicode_escapes()
    {
        const string schema = """{"type": "object", "properties": {"s": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 3}}, "required": ["s"]}""";
        AssertReads(schema, """{"s":"abc"}""");
        AssertRefusedAfter(schema, """{"s":"abcd"}""", """{"s":"abc""");
        AssertRefusedAfter(schema, """{"s":""}""", "{\"s\":\"");
        AssertRefusedAfter(
            """{"type": "object", "properties": {"s": {"type": "string", "pattern": "^é$"}}, "required": ["s"]}""", """{"s":"\u00e9"}""", "{\"s\":\""); // no escape gives é
    }

    [Fact]
    public void Forced_tool_calls_name_a_tool_and_give_it_arguments_of_its_schema()
    {
        (string, JsonElement?)[] tools =
        [
            ("get_weather", JsonDocument.Parse("""{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}""").RootElement),
            ("get_time", null), // no parameters: called with {}
        ];
        (int, bool) ReadCalls(bool parallel, string text) => Grammars.Read(JsonSchema.ToolCalls(tools, parallel).Start, text);
        void Reads(bool parallel, string text) => Assert.Equal((Encoding.UTF8.GetByteCount(text), true), ReadCalls(parallel, text));
        void RefusedAfter(bool parallel, string text, string prefix) => Assert.Equal((prefix.Length, false), ReadCalls(parallel, text));

        Reads(true, """[{"name": "get_weather", "arguments": {"city": "Oslo"}}]""");
        Reads(true, """[{"name":"get_time","arguments":{}},{"name":"get_weather","arguments":{"city":""}}]""");
        Reads(false, """{"name":"get_time","arguments":{}}""");
        RefusedAfter(false, """[{"name":"get_time","arguments":{}}]""", ""); // one call, not a list
        RefusedAfter(true, "[]", "["); // at least one call
        RefusedAfter(true, """[{"name":"get_date","arguments":{}}]""", """[{"name":"get_""");
        RefusedAfter(true, """[{"name":"get_time","arguments":{"tz":"UTC"}}]""", """[{"name":"get_time","arguments":{""");
        RefusedAfter(true, """[{"name":"get_weather","arguments":{"city":1}}]""", """[{"name":"get_weather","arguments":{"city":""");
        RefusedAfter(true, """[{"name":"get_weather","arguments":{}}]""", """[{"name":"get_weather","arguments":{"""); // city is required

        var error = Assert.Throws<JsonSchemaException>(() => JsonSchema.ToolCalls([("a", null), ("b", JsonDocument.Parse("""{"type": "object", "properties": {"n": {"type": "integer", "not": {"const": 2}}}}""").RootElement)], parallel: true));
        Assert.Equal((1, "#/properties/n"), (error.Tool, error.Location));
    }

    [Theory]
    [InlineData("""{"type": "object", "properties": {"zip": {"type": "string", "format": "postal-code"}}}""", "#/properties/zip/format", "\"postal-code\" is not a format gpud enforces")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "^a(?=b)"}}}""", "#/properties/p/pattern", "lookaround is not supported, except lookaheads right after a leading '^'")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "^(?!)"}}}""", "#/properties/p/pattern", "matches no string")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "^a(?<=a)"}}}""", "#/properties/p/pattern", "lookaround is not supported")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "^\\d{5}$", "maxLength": 3}}}""", "#/properties/p/pattern", "its shortest match has 5 characters, more than 'maxLength' (3)")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "^[A-Z]{2}$", "minLength": 3}}}""", "#/properties/p/pattern", "its longest match has 2 characters, fewer than 'minLength' (3)")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "^(ab)+$", "minLength": 3, "maxLength": 3}}}""", "#/properties/p/pattern", "no match has between 3 and 3 characters")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "format": "date", "pattern": "^x"}}}""", "#/properties/p", "no string matches everything it asks together")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "^(?=a)b"}}}""", "#/properties/p/pattern", "no string matches everything it asks together")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "(a)\\1"}}}""", "#/properties/p/pattern", "backreferences are not supported")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "\\bword"}}}""", "#/properties/p/pattern", "word boundaries")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "^a|b$"}}}""", "#/properties/p/pattern", "group the alternatives")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "^[a-z]{100}{100}$"}}}""", "#/properties/p/pattern", "automaton states")]
    [InlineData("""{"type": "object", "properties": {"p": {"type": "string", "pattern": "^\\x01$"}}}""", "#/properties/p/pattern", "matches no string")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}, "m": {"type": "integer", "multipleOf": 0}}}""", "#/properties/m/multipleOf", "greater than 0")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "number", "multipleOf": 1e-12}}}""", "#/properties/n/multipleOf", "at most 9 decimals")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 5, "minimum": 1, "maximum": 4}}}""", "#/properties/n", "no multiple of 5 lies between")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "number", "not": {"const": 1}}}}""", "#/properties/n", "'not' is not supported")]
    [InlineData("""{"type": "object", "properties": {"n": {"allOf": [{"type": "integer"}, {"minimum": 0}]}}}""", "#/properties/n/allOf", "exactly one schema")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "integer", "minimum": 0.5, "maximum": 0.7}}}""", "#/properties/n", "no integer lies between")]
    [InlineData("""{"type": "object", "properties": {"n": {"type": "number", "minimum": 1e30}}}""", "#/properties/n/minimum", "bounds beyond")]
    [InlineData("""{"type": "array", "items": {"type": "string"}}""", "#", "the root must be an object")]
    [InlineData("""{"type": "object", "properties": {"self": {"$ref": "#"}}, "required": ["self"]}""", "#", "no finite JSON value")]
    [InlineData("""{"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}""", "#/properties/a/$ref", "within the schema")]
    [InlineData("""{"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}""", "#/properties/a/$ref", "points at nothing")]
    [InlineData("""{"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "type": "object", "properties": {"x": {"$ref": "#/$defs/a"}}}""", "#/$defs/a", "leads back to itself")]
    [InlineData("""{"type": "object", "properties": {"r": {"type": "string", "enum": ["a", 1]}}}""", "#/properties/r/enum", "1 is not of type string")]
    [InlineData("""{"type": "object", "properties": {"xs": {"type": "array", "minItems": 3, "maxItems": 2}}}""", "#/properties/xs", "greater than 'maxItems'")]
    [InlineData("""{"type": "object", "properties": {"s": {"type": "string", "minLength": -1}}}""", "#/properties/s/minLength", "non-negative integer")]
    [InlineData("""{"type": "object", "required": ["x"], "additionalProperties": false}""", "#/required", "'x' is required")]
    [InlineData("""{"type": "object", "properties": {"t": {"type": "date"}}}""", "#/properties/t/type", "'date' is not one of")]
    [InlineData("""{"type": "object", "properties": {"v": {"oneOf": [{"type": "number"}, {"type": "integer"}]}}}""", "#/properties/v/oneOf", "branches 0 and 1 may both match one value")]
    [InlineData("""{"type": "object", "properties": {"t": {"prefixItems": [{}], "items": [{}]}}}""", "#/properties/t/items", "cannot follow 'prefixItems'")]
    [InlineData("""{"type": "object", "properties": {"t": {"type": "array", "additionalItems": false}}}""", "#/properties/t/additionalItems", "applies only after an array of 'items'")]
    [InlineData("""{"type": "object", "properties": {"t": {"prefixItems": [{}], "items": false, "minItems": 2}}}""", "#/properties/t", "more than the 1 items it allows")]
    [InlineData("""{"type": "object", "properties": {"v": {"oneOf": [{"type": "string"}, {"type": "object", "properties": {"a": {"const": 1}}}, {"type": "object", "properties": {"a": {"const": 2}}}]}}}""", "#/properties/v/oneOf", "branches 1 and 2 may both match")]
    public void Schemas_gpud_cannot_enforce_are_refused_saying_where_and_why(string schema, string location, string reason)
    {
        var error = Assert.Throws<JsonSchemaException>(() => Compile(schema));
        Assert.Equal(location, error.Location);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_trie_walk_allows_exactly_the_tokens_whose_bytes_the_schema_accepts()
    {
        var tokenizer = TextTokenizer.Load(TinyModel);
        var bytes = tokenizer.TokenBytes();
        var trie = new TokenTrie(bytes);
        const string patterned = """{"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]{2}-\\d+$"}}, "required": ["code"]}""";
        const string bounded = """{"type": "object", "properties": {"s": {"type": "string", "maxLength": 4}, "n": {"type": "integer", "minimum": -5, "maximum": 250}}, "required": ["s", "n"]}""";
        var cases = new[] { "", "{", "{\"na", "{\"name\":\"Zo", "{\"name\":\"A\",\"age\":1", "{\"name\":\"A\",\"age\":1,\"tags\":[", "{\"name\":\"A\",\"age\":1,\"tags\":[],\"role\":\"", "{\"name\":\"A\",\"age\":1,\"tags\":[],\"role\":\"user\",\"nick\":" }
            .Select(p => (Person, p))
            .Concat(new[] { "{\"s\":\"", "{\"s\":\"ab", "{\"s\":\"abcd", "{\"s\":\"ab\",\"n\":", "{\"s\":\"ab\",\"n\":2", "{\"s\":\"ab\",\"n\":-" }.Select(p => (bounded, p)))
            .Concat(new[] { "{\"code\":\"", "{\"code\":\"A", "{\"code\":\"AB-", "{\"code\":\"AB-1" }.Select(p => (patterned, p)));
        foreach (var (schemaText, prefix) in cases)
        {
            Grammars.AssertWalkIsExact(trie, bytes, Grammars.After(Compile(schemaText).Start, prefix), $"after '{prefix}'");
        }
    }

    [Fact]
    public void No_token_the_walk_allows_leads_where_no_token_can_follow()
    {
        var bytes = TextTokenizer.Load(TinyModel).TokenBytes();
        var trie = new TokenTrie(bytes);
        const string schema = """
            {"type": "object", "required": ["code", "name", "tag", "mail", "pw"], "properties": {
              "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
              "name": {"type": "string", "pattern": "^[^a-z]+$", "maxLength": 3},
              "tag": {"type": "string", "pattern": "^(é|ü)+$"},
              "mail": {"type": "string", "format": "email", "maxLength": 12},
              "pw": {"type": "string", "pattern": "^(?=.*\\d)(?=.*[A-Z]).{4,6}$"}}}
            """;
        const string head = "{\"code\":\"AB-123\",\"name\":\"XYZ\",\"tag\":\"é\",\"mail\":\"";
        string[] prefixes = ["{\"code\":\"", "{\"code\":\"AB", "{\"code\":\"AB-1", "{\"code\":\"AB-123\",\"name\":\"", "{\"code\":\"AB-123\",\"name\":\"X", "{\"code\":\"AB-123\",\"name\":\"XYZ\",\"tag\":\"",
            head + "abcdefgh", head + "abcdefgh@", head + "abcdefgh@x", head + "a@b.c\",\"pw\":\"abcd", head + "a@b.c\",\"pw\":\"ab1"];
        foreach (var prefix in prefixes)
        {
            var state = Grammars.After(Compile(schema).Start, prefix);
            var allowed = new bool[bytes.Count];
            trie.Walk(state, allowed);
            Assert.Contains(true, allowed);
            for (var id = 0; id < bytes.Count; id++)
            {
                if (!allowed[id]) continue;
                var next = state;
                foreach (var b in bytes[id]!) Assert.True(next.Advance(b));
                var then = new bool[bytes.Count];
                trie.Walk(next, then);
                Assert.True(next.IsComplete || then.Contains(true), $"after '{prefix}' + token {id} ({Convert.ToHexString(bytes[id]!)}) nothing can follow");
            }
        }
    }

    [Fact]
    public void A_random_weight_model_constrained_to_a_schema_writes_instances_of_it()
    {
        // Few free strings: a random model rarely closes one, and the point is the structure.
        const string schema = """
            {"type": "object", "additionalProperties": false, "required": ["role", "age", "flags", "nick", "pet", "code"],
             "properties": {
               "role": {"enum": ["admin", "user"]},
               "age": {"type": "integer"},
               "flags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
               "nick": {"type": ["string", "null"]},
               "pet": {"anyOf": [{"type": "null"}, {"type": "object", "properties": {"legs": {"type": "integer"}}, "required": ["legs"], "additionalProperties": false}]},
               "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"}}}
            """;
        var tokenizer = TextTokenizer.Load(TinyModel);
        var constraint = new StructuredOutput(tokenizer.TokenBytes()).JsonSchema(JsonDocument.Parse(schema).RootElement);
        using var model = CausalLanguageModel.Load(TinyModel, CPU, ScalarType.Float32);
        var prompt = tokenizer.Encode("A person as JSON:", addSpecialTokens: true);
        var parameters = Enumerable.Range(0, 8)
            .Select(i => new SamplingParameters(300, Temperature: i == 0 ? 0 : 1, Seed: i, StopTokenIds: model.Config.EosTokenIds, Constraint: constraint))
            .ToList();

        var results = new TokenGenerator(model).Generate(parameters.Select(_ => prompt).ToList(), parameters);

        var finished = results.Where(r => r.FinishReason == FinishReason.Stop).ToList();
        Assert.True(finished.Count >= 4, string.Join("\n", results.Select(r => $"{r.FinishReason}: {tokenizer.Decode(r.TokenIds)}")));
        foreach (var result in finished)
        {
            var text = tokenizer.Decode(result.TokenIds);
            var root = JsonDocument.Parse(text).RootElement;
            Assert.Equal(["role", "age", "flags", "nick", "pet", "code"], root.EnumerateObject().Select(p => p.Name));
            Assert.Contains(root.GetProperty("role").GetString(), new[] { "admin", "user" });
            Assert.True(root.GetProperty("age").TryGetInt64(out _), text);
            Assert.InRange(root.GetProperty("flags").GetArrayLength(), 0, 3);
            Assert.All(root.GetProperty("flags").EnumerateArray(), f => Assert.Contains(f.ValueKind, new[] { JsonValueKind.True, JsonValueKind.False }));
            Assert.Contains(root.GetProperty("nick").ValueKind, new[] { JsonValueKind.String, JsonValueKind.Null });
            var pet = root.GetProperty("pet");
            Assert.True(pet.ValueKind == JsonValueKind.Null || pet.EnumerateObject().Single().Name == "legs" && pet.GetProperty("legs").TryGetInt64(out _), text);
            Assert.Matches("^[A-Z]{2}-[0-9]{3}$", root.GetProperty("code").GetString());
        }
        foreach (var result in results.Where(r => r.FinishReason == FinishReason.Length))
            Assert.Equal(300, result.TokenIds.Count);
    }
}

public sealed class ConstraintDeadEndTests
{
    /// <summary>A rule that allows nothing: what a grammar would do over a vocabulary that cannot spell a byte it needs.</summary>
    private sealed class NothingAllowed : ITokenConstraint
    {
        public bool IsComplete => false;

        public void Allowed(Span<ulong> allowed) => allowed.Clear();

        public void Advance(int tokenId) => throw new InvalidOperationException("no token was allowed");
    }

    [Fact]
    public void A_constraint_that_allows_no_token_ends_its_sequence_and_leaves_the_batch_running()
    {
        var path = Repo.File("tests/fixtures/models/gpud-tiny");
        var tokenizer = TextTokenizer.Load(path);
        using var model = CausalLanguageModel.Load(path, CPU, ScalarType.Float32);
        var prompt = tokenizer.Encode("Hello", addSpecialTokens: true);
        var stuck = new SamplingParameters(20, Temperature: 1, Seed: 1, StopTokenIds: model.Config.EosTokenIds, Constraint: () => new NothingAllowed());
        var free = SamplingParameters.Greedy(20);

        var results = new TokenGenerator(model).Generate([prompt, prompt], [stuck, free]);

        Assert.Equal((FinishReason.Stop, 0), (results[0].FinishReason, results[0].TokenIds.Count));
        Assert.Equal((FinishReason.Length, 20), (results[1].FinishReason, results[1].TokenIds.Count));
    }
}
