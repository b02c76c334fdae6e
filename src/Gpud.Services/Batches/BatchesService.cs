using System.Text.Json;
using Gpud.Services.Errors;
using Gpud.Services.Files;
using Gpud.Services.Ids;
using Gpud.Storage.Batches;
using Gpud.Storage.Common;
using Microsoft.Extensions.Logging;

namespace Gpud.Services.Batches;

/// <summary>
/// OpenAI's Batch API. Creating a batch checks the request and stores it (<c>validating</c>); the
/// <see cref="BatchRunner"/> reads the input file, runs its requests in the background and writes the output and error
/// files. Every change is committed to SQLite before the caller sees it.
/// </summary>
public sealed partial class BatchesService(
    BatchRepository batches,
    FilesService files,
    IEnumerable<IBatchEndpoint> endpoints,
    BatchRunner runner,
    TimeProvider time,
    ILogger<BatchesService> logger)
{
    /// <summary>The only window OpenAI offers; gpud runs a batch as soon as the requests before it are done.</summary>
    public const string CompletionWindow = "24h";
    public const int MaxListLimit = 100;

    private static readonly HashSet<string> Fields = new(StringComparer.Ordinal)
    {
        "input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after",
    };

    private readonly string[] _urls = endpoints.Select(e => e.Url).Order(StringComparer.Ordinal).ToArray();

    public BatchRecord Create(string project, JsonElement body)
    {
        var fields = RequestFields.Known(body, Fields);
        var inputFileId = RequestFields.RequiredString(fields, "input_file_id");
        var endpoint = RequestFields.RequiredString(fields, "endpoint");
        if (!_urls.Contains(endpoint, StringComparer.Ordinal))
            throw GpudException.Invalid($"Invalid value for 'endpoint': gpud runs batches of {string.Join(", ", _urls)} (got '{endpoint}').",
                "endpoint", "invalid_value");
        var window = RequestFields.RequiredString(fields, "completion_window");
        if (window != CompletionWindow)
            throw GpudException.Invalid($"Invalid value for 'completion_window': it must be '{CompletionWindow}'.", "completion_window", "invalid_value");
        var metadata = fields.TryGetValue("metadata", out var m) ? RequestFields.Metadata(m) : null;
        var outputExpiresAfter = fields.TryGetValue("output_expires_after", out var e) ? RequestFields.ExpiresAfter(e, "output_expires_after") : (long?)null;

        Storage.Files.FileRecord file;
        try
        {
            file = files.Get(project, inputFileId);
        }
        catch (GpudException missing) when (missing.Kind == ErrorKind.NotFound)
        {
            throw GpudException.NotFound(missing.Message, "input_file_id");
        }
        if (file.Purpose != FilePurposes.Batch)
            throw GpudException.Invalid($"The input file {inputFileId} has purpose '{file.Purpose}'; a batch reads a file uploaded with purpose 'batch'.",
                "input_file_id", "invalid_file_purpose");

        var now = time.GetUtcNow().ToUnixTimeSeconds();
        var record = new BatchRecord(ResourceId.New("batch_"), project, endpoint, inputFileId, window, BatchStatus.Validating, now,
            now + (long)TimeSpan.FromHours(24).TotalSeconds, metadata is null ? null : JsonSerializer.Serialize(metadata), outputExpiresAfter);
        batches.Insert(record);
        LogCreated(logger, record.Id, project, endpoint, inputFileId);
        runner.Wake();
        return record;
    }

    public BatchRecord Get(string project, string id) => batches.Find(project, id) ?? throw NotFound(id);

    public Page<BatchRecord> List(string project, int? limit, string? after)
    {
        return batches.List(project, RequestFields.ListLimit(limit, 20, MaxListLimit), after) ?? throw GpudException.Invalid($"No such batch: {after} (the 'after' cursor).", "after");
    }

    /// <summary>
    /// Stops a batch: <c>cancelling</c> at once (its requests in flight are stopped, none starts), then <c>cancelled</c>,
    /// with the answers it has in its output and error files. Cancelling a batch that is already cancelling changes nothing.
    /// </summary>
    public BatchRecord Cancel(string project, string id)
    {
        var batch = Get(project, id);
        if (batch.Status == BatchStatus.Cancelling) return batch;
        var cancelling = batches.Transition(id, [BatchStatus.Validating, BatchStatus.InProgress],
            new BatchChanges(BatchStatus.Cancelling) { CancellingAt = time.GetUtcNow().ToUnixTimeSeconds() });
        if (cancelling is null)
        {
            var now = batches.Find(project, id) ?? batch;
            throw GpudException.Invalid($"Cannot cancel batch {id}: its status is '{now.Status}'.", "id", "invalid_batch_state");
        }
        LogCancelling(logger, id);
        runner.Stop(id);
        return cancelling;
    }

    public static GpudException NotFound(string id) => GpudException.NotFound($"No such batch: {id}", "id");

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch {BatchId} created in project {Project}: {Endpoint} over file {InputFileId}")]
    private static partial void LogCreated(ILogger logger, string batchId, string project, string endpoint, string inputFileId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Batch {BatchId} cancelling: its requests in flight stop and no more start")]
    private static partial void LogCancelling(ILogger logger, string batchId);
}
