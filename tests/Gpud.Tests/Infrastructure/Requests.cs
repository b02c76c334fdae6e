using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Gpud.Tests.Infrastructure;

/// <summary>Small helpers for speaking to the API the way an OpenAI client does.</summary>
public static class Requests
{
    public static MultipartFormDataContent UploadForm(string content, string purpose = "fine-tune", string filename = "train.jsonl") =>
        UploadForm(Encoding.UTF8.GetBytes(content), purpose, filename);

    public static MultipartFormDataContent UploadForm(byte[] content, string? purpose = "fine-tune", string filename = "train.jsonl")
    {
        var form = new MultipartFormDataContent();
        var file = new ByteArrayContent(content);
        file.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        form.Add(file, "file", filename);
        if (purpose is not null) form.Add(new StringContent(purpose), "purpose");
        return form;
    }

    public static async Task<JsonElement> Json(this HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        return JsonDocument.Parse(text).RootElement.Clone();
    }

    /// <summary>Asserts the OpenAI error envelope: all four keys present, the status, and what a client reads.</summary>
    /// <summary>The events of a streamed (server-sent events) response, without the closing [DONE].</summary>
    public static async Task<List<JsonElement>> Events(this HttpResponseMessage response) =>
        (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(e => e["data: ".Length..]).Where(d => d != "[DONE]").Select(d => JsonDocument.Parse(d).RootElement).ToList();

    /// <summary>The typed events of a Responses API stream: each block's <c>event:</c> name and its data.</summary>
    public static async Task<List<(string Name, JsonElement Data)>> TypedEvents(this HttpResponseMessage response) =>
        (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(block =>
        {
            var lines = block.Split('\n');
            var name = lines.Single(l => l.StartsWith("event: ", StringComparison.Ordinal))["event: ".Length..];
            return (name, JsonDocument.Parse(lines.Single(l => l.StartsWith("data: ", StringComparison.Ordinal))["data: ".Length..]).RootElement.Clone());
        }).ToList();

    public static async Task<JsonElement> AssertError(this HttpResponseMessage response, HttpStatusCode status, string? param = null, string? code = null)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.True(response.Headers.Contains("x-request-id"), "every response carries x-request-id");
        var error = (await response.Json()).GetProperty("error");
        foreach (var key in new[] { "message", "type", "param", "code" })
            Assert.True(error.TryGetProperty(key, out _), $"error.{key} must be present");
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal((int)status >= 500 ? "server_error" : "invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal(param, error.GetProperty("param").ValueKind == JsonValueKind.Null ? null : error.GetProperty("param").GetString());
        Assert.Equal(code, error.GetProperty("code").ValueKind == JsonValueKind.Null ? null : error.GetProperty("code").GetString());
        return error;
    }

    public static string ChatJsonl(int examples, string answerPrefix = "a")
    {
        var sb = new StringBuilder();
        for (var i = 0; i < examples; i++)
            sb.Append(CultureInvariant($$"""{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"question {{i}} ✓"},{"role":"assistant","content":"{{answerPrefix}}{{i}}"}]}""")).Append('\n');
        return sb.ToString();
    }

    private static string CultureInvariant(FormattableString s) => FormattableString.Invariant(s);
}
