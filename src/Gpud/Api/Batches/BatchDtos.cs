using System.Text.Json;
using Gpud.Storage.Batches;

namespace Gpud.Api.Batches;

/// <summary>A problem with a batch's input file; <c>line</c> counts from 1.</summary>
public sealed record BatchErrorObject(string Code, string Message, string? Param, int? Line);

public sealed record BatchErrors(string Object, IReadOnlyList<BatchErrorObject> Data);

/// <summary>Requests in the batch; those completed (status 200) and those failed (any other answer, or expired).</summary>
public sealed record BatchRequestCounts(int Total, int Completed, int Failed);

public sealed record BatchInputTokensDetails(long CachedTokens);

public sealed record BatchOutputTokensDetails(long ReasoningTokens);

public sealed record BatchUsage(long InputTokens, BatchInputTokensDetails InputTokensDetails, long OutputTokens, BatchOutputTokensDetails OutputTokensDetails, long TotalTokens);

/// <summary>
/// <c>batch</c>: a Batch API batch. <c>model</c> is the model every request names (null when they name several: gpud
/// runs a batch across models and adapters). <c>output_file_id</c> holds the answers with status 200,
/// <c>error_file_id</c> the others; either is null when it would be empty.
/// </summary>
public sealed record BatchObject(
    string Id, string Object, string Endpoint, string? Model, BatchErrors? Errors, string InputFileId, string CompletionWindow, string Status,
    string? OutputFileId, string? ErrorFileId, long CreatedAt, long? InProgressAt, long ExpiresAt, long? FinalizingAt, long? CompletedAt,
    long? FailedAt, long? ExpiredAt, long? CancellingAt, long? CancelledAt, BatchRequestCounts RequestCounts, BatchUsage Usage,
    IReadOnlyDictionary<string, string>? Metadata)
{
    public static BatchObject From(BatchRecord b)
    {
        ArgumentNullException.ThrowIfNull(b);
        var errors = b.Errors is null ? null : new BatchErrors("list", JsonSerializer.Deserialize<List<BatchErrorObject>>(b.Errors, Json)!);
        return new BatchObject(b.Id, "batch", b.Endpoint, b.Model, errors, b.InputFileId, b.CompletionWindow, b.Status, b.OutputFileId, b.ErrorFileId,
            b.CreatedAt, b.InProgressAt, b.ExpiresAt, b.FinalizingAt, b.CompletedAt, b.FailedAt, b.ExpiredAt, b.CancellingAt, b.CancelledAt,
            new BatchRequestCounts(b.Total, b.Completed, b.Failed),
            new BatchUsage(b.InputTokens, new BatchInputTokensDetails(0), b.OutputTokens, new BatchOutputTokensDetails(0), b.InputTokens + b.OutputTokens),
            b.Metadata is null ? null : JsonSerializer.Deserialize<Dictionary<string, string>>(b.Metadata));
    }

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
}

public sealed record BatchList(string Object, IReadOnlyList<BatchObject> Data, string? FirstId, string? LastId, bool HasMore);

/// <summary><c>{"anchor": "created_at", "seconds": 3600..2592000}</c>: when the output and error files expire.</summary>
public sealed record BatchOutputExpiresAfter(string Anchor, long Seconds);

/// <summary>
/// Documents the request body in the OpenAPI spec; the endpoint reads the JSON itself (field-by-field 400s).
/// </summary>
/// <param name="InputFileId">A file uploaded with purpose <c>batch</c>: one <c>{"custom_id", "method": "POST", "url", "body"}</c> per line.</param>
/// <param name="Endpoint"><c>/v1/chat/completions</c>, <c>/v1/completions</c> or <c>/v1/responses</c>.</param>
/// <param name="CompletionWindow">Always <c>24h</c>: requests not answered by then expire.</param>
/// <param name="Metadata">Up to 16 string pairs.</param>
/// <param name="OutputExpiresAfter">When the output and error files expire (default: never).</param>
public sealed record CreateBatchRequest(string InputFileId, string Endpoint, string CompletionWindow, Dictionary<string, string>? Metadata,
    BatchOutputExpiresAfter? OutputExpiresAfter);
