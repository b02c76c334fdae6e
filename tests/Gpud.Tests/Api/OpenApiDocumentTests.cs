using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Api;

/// <summary>
/// The committed openapi/gpud.json must equal what the code serves. To regenerate it after changing endpoints:
/// <c>scripts/update-openapi</c> (runs this test with GPUD_UPDATE_OPENAPI=1).
/// </summary>
public sealed class OpenApiDocumentTests
{
    [Fact]
    public async Task The_committed_openapi_document_matches_the_served_one()
    {
        using var gpud = new GpudFactory();
        var served = Normalize(await gpud.Client().GetStringAsync("/swagger/v1/swagger.json"));
        var path = Repo.File("openapi/gpud.json");

        if (Environment.GetEnvironmentVariable("GPUD_UPDATE_OPENAPI") == "1")
            await File.WriteAllTextAsync(path, served);

        Assert.True(File.Exists(path), "openapi/gpud.json is missing: run scripts/update-openapi");
        Assert.True(served == await File.ReadAllTextAsync(path),
            "openapi/gpud.json differs from the document the code serves: run scripts/update-openapi and commit the result");
        Assert.Contains("\"/v1/files\"", served);
    }

    [Fact]
    public async Task Every_request_body_is_documented_with_its_type_so_generated_clients_have_request_types()
    {
        using var gpud = new GpudFactory();
        var document = JsonNode.Parse(await gpud.Client().GetStringAsync("/swagger/v1/swagger.json"))!;
        var bodies = document["paths"]!.AsObject()
            .SelectMany(path => path.Value!.AsObject().Select(op => (Route: $"{op.Key} {path.Key}", Body: op.Value!["requestBody"])))
            .Where(op => op.Body is not null)
            .SelectMany(op => op.Body!["content"]!.AsObject().Select(c => (op.Route, Schema: c.Value!["schema"]?["$ref"]?.GetValue<string>())))
            .ToList();
        Assert.Contains(bodies, b => b.Route == "post /v1/chat/completions");
        Assert.All(bodies, b => Assert.True(b.Schema is not null, $"{b.Route} documents no request schema"));
        var chat = document["components"]!["schemas"]!["CreateChatCompletionRequest"]!["properties"]!;
        Assert.Equal("#/components/schemas/ResponseFormat", chat["response_format"]!["$ref"]!.GetValue<string>());
    }

    private static string Normalize(string json) =>
        JsonNode.Parse(json)!.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }) + "\n";
}
