using System.Text;
using System.Text.Json;

namespace Gpud.Services.Batches;

/// <summary>One request of a batch's input file: <paramref name="Index"/> counts requests from 0 in file order.</summary>
public sealed record BatchRequest(int Index, int Line, string CustomId, JsonElement Body);

/// <summary>A problem with the input file, reported in the failed batch's <c>errors</c> (line numbers from 1).</summary>
public sealed record BatchInputError(string Code, string Message, string? Param, int? Line);

/// <summary>
/// Reads a batch's input file: one JSON object per line, <c>{"custom_id", "method": "POST", "url", "body"}</c>, every
/// <c>url</c> the batch's endpoint and every <c>custom_id</c> distinct. Any problem fails the whole batch before a
/// request runs (as OpenAI validates), listing up to <see cref="MaxErrors"/> of them with their line numbers.
/// </summary>
public sealed class BatchInput
{
    public const int MaxRequests = 50_000;
    public const int MaxErrors = 100;
    public const int MaxCustomIdLength = 512;

    private static readonly HashSet<string> LineFields = new(StringComparer.Ordinal) { "custom_id", "method", "url", "body" };

    private BatchInput(IReadOnlyList<BatchRequest> requests, IReadOnlyList<BatchInputError> errors, string? model)
    {
        Requests = requests;
        Errors = errors;
        Model = model;
    }

    public IReadOnlyList<BatchRequest> Requests { get; }

    public IReadOnlyList<BatchInputError> Errors { get; }

    /// <summary>The model every request names, or null when they differ (gpud runs a batch over several models).</summary>
    public string? Model { get; }

    public static BatchInput Read(Stream content, string endpoint)
    {
        ArgumentNullException.ThrowIfNull(content);
        var requests = new List<BatchRequest>();
        var errors = new List<BatchInputError>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var models = new HashSet<string>(StringComparer.Ordinal);
        using var reader = new StreamReader(content, new UTF8Encoding(false, throwOnInvalidBytes: true));
        var number = 0;
        void Fail(string code, string message, string? param = null) => errors.Add(new BatchInputError(code, message, param, number));
        string? text;
        while (errors.Count < MaxErrors)
        {
            try
            {
                text = reader.ReadLine();
            }
            catch (DecoderFallbackException)
            {
                errors.Add(new BatchInputError("invalid_encoding", "The input file is not valid UTF-8.", null, number + 1));
                break;
            }
            if (text is null) break;
            number++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            JsonElement line;
            try
            {
                using var document = JsonDocument.Parse(text);
                line = document.RootElement.Clone();
            }
            catch (JsonException)
            {
                Fail("invalid_json_line", $"Line {number} is not valid JSON.");
                continue;
            }
            if (line.ValueKind != JsonValueKind.Object)
            {
                Fail("invalid_json_line", $"Line {number} must be a JSON object with custom_id, method, url and body.");
                continue;
            }
            if (line.EnumerateObject().Select(p => p.Name).FirstOrDefault(name => !LineFields.Contains(name)) is { } unknown)
            {
                Fail("unknown_parameter", $"Line {number} has an unrecognized field '{unknown}' (a request line has custom_id, method, url and body).", unknown);
                continue;
            }
            if (!line.TryGetProperty("custom_id", out var id) || id.ValueKind != JsonValueKind.String || id.GetString() is not { Length: > 0 and <= MaxCustomIdLength } customId)
            {
                Fail("invalid_custom_id", $"Line {number} needs a custom_id: a string of 1 to {MaxCustomIdLength} characters.", "custom_id");
                continue;
            }
            if (!line.TryGetProperty("method", out var method) || method.ValueKind != JsonValueKind.String || method.GetString() != "POST")
            {
                Fail("invalid_method", $"Line {number}: method must be \"POST\".", "method");
                continue;
            }
            if (!line.TryGetProperty("url", out var url) || url.ValueKind != JsonValueKind.String)
            {
                Fail("missing_required_parameter", $"Line {number} needs a url (the batch's endpoint, {endpoint}).", "url");
                continue;
            }
            if (url.GetString() != endpoint)
            {
                Fail("mismatched_endpoint", $"Line {number}: url '{url.GetString()}' is not the batch's endpoint, {endpoint}.", "url");
                continue;
            }
            if (!line.TryGetProperty("body", out var body) || body.ValueKind != JsonValueKind.Object)
            {
                Fail("invalid_body", $"Line {number}: body must be the request's JSON object.", "body");
                continue;
            }
            if (!ids.Add(customId))
            {
                Fail("duplicate_custom_id", $"Line {number}: custom_id '{customId}' is used by an earlier line; each request needs its own.", "custom_id");
                continue;
            }
            if (requests.Count == MaxRequests)
            {
                Fail("too_many_requests", $"The input file has more than {MaxRequests} requests; split it into several batches.");
                break;
            }
            if (body.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.String) models.Add(model.GetString()!);
            else models.Add("");
            requests.Add(new BatchRequest(requests.Count, number, customId, body));
        }
        if (errors.Count == 0 && requests.Count == 0) errors.Add(new BatchInputError("empty_file", "The input file has no requests.", null, null));
        return new BatchInput(requests, errors, models.Count == 1 && models.Single().Length > 0 ? models.Single() : null);
    }
}
