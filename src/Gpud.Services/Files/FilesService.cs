using Gpud.Engine.Data;
using Gpud.Services.Errors;
using Gpud.Services.Ids;
using Gpud.Storage.Blobs;
using Gpud.Storage.Common;
using Gpud.Storage.Files;
using Microsoft.Extensions.Logging;

namespace Gpud.Services.Files;

/// <summary>Limits the Files API enforces.</summary>
public sealed record FilesLimits(long MaxUploadBytes);

/// <summary>
/// The Files API's use cases. An upload is staged (streamed to a temporary blob and inspected in one pass), then
/// committed: the blob is renamed into place first and the row inserted second, so a crash between the two leaves
/// an unowned blob that <see cref="Recover"/> deletes, never a row without bytes.
/// </summary>
public sealed partial class FilesService(
    FileRepository files,
    BlobStore blobs,
    FilesLimits limits,
    TimeProvider time,
    ILogger<FilesService> logger)
{
    public const int MaxFilenameLength = 512;
    public const long MinExpirySeconds = RequestFields.MinExpirySeconds;
    public const long MaxExpirySeconds = RequestFields.MaxExpirySeconds;
    public const int MaxListLimit = 10_000;

    public long MaxUploadBytes => limits.MaxUploadBytes;

    /// <summary>Streams an upload's bytes to disk, checking size and JSONL structure as they pass.</summary>
    public async Task<FileUpload> StageAsync(Stream content, CancellationToken cancellationToken)
    {
        var inspector = new TrainingDataInspector();
        try
        {
            var blob = await blobs.StageAsync(content, limits.MaxUploadBytes, inspector.Append, cancellationToken);
            return new FileUpload(blob, inspector.Complete());
        }
        catch (BlobTooLargeException)
        {
            throw TooLarge();
        }
    }

    public GpudException TooLarge() => new(ErrorKind.PayloadTooLarge,
        $"The file is larger than the maximum upload size of {limits.MaxUploadBytes} bytes.", "file", "file_too_large");

    /// <summary>Makes a staged upload a visible file of <paramref name="project"/>.</summary>
    public FileRecord Create(string project, FileUpload upload, string? filename, string? purpose, string? expiresAnchor, long? expiresSeconds)
    {
        ArgumentNullException.ThrowIfNull(upload);
        if (string.IsNullOrEmpty(purpose))
            throw GpudException.Invalid("Missing required parameter: 'purpose'.", "purpose");
        if (!FilePurposes.Uploadable.Contains(purpose))
            throw GpudException.Invalid(
                $"'{purpose}' is not one of {string.Join(", ", FilePurposes.Uploadable.Order().Select(p => $"'{p}'"))} - 'purpose'.", "purpose");
        if (string.IsNullOrEmpty(filename))
            throw GpudException.Invalid("The 'file' part needs a filename.", "file");
        if (filename.Length > MaxFilenameLength)
            throw GpudException.Invalid($"The filename is longer than {MaxFilenameLength} characters.", "file");

        var now = time.GetUtcNow().ToUnixTimeSeconds();
        long? expiresAt = null;
        if (expiresAnchor is not null || expiresSeconds is not null)
        {
            if (expiresAnchor != "created_at")
                throw GpudException.Invalid("expires_after[anchor] must be 'created_at'.", "expires_after[anchor]");
            if (expiresSeconds is not (>= MinExpirySeconds and <= MaxExpirySeconds))
                throw GpudException.Invalid(
                    $"expires_after[seconds] must be between {MinExpirySeconds} and {MaxExpirySeconds}.", "expires_after[seconds]");
            expiresAt = now + expiresSeconds.Value;
        }

        var inspection = upload.Inspection;
        var isTraining = purpose == FilePurposes.FineTune;
        var record = new FileRecord(
            ResourceId.New("file-"),
            project,
            filename,
            purpose,
            upload.Length,
            upload.Blob.Sha256,
            now,
            expiresAt,
            Status: isTraining && !inspection.IsValid ? "error" : "processed",
            StatusDetails: isTraining ? inspection.Error?.ToString() : null,
            DataFormat: isTraining && inspection.IsValid ? FormatName(inspection.Format!.Value) : null,
            ExampleCount: isTraining && inspection.IsValid ? inspection.ExampleCount : null);

        blobs.Commit(upload.Blob, record.BlobKey);
        try
        {
            files.Insert(record);
        }
        catch
        {
            blobs.Delete(record.BlobKey); // no row, so nobody may keep the bytes (Recover would sweep them too)
            throw;
        }
        LogCreated(logger, record.Id, record.Project, record.Bytes, record.Status);
        return record;
    }

    /// <summary>
    /// Stores a file gpud produced (a job's result CSV, a batch's output) in <paramref name="project"/>, as atomically as
    /// an upload; it expires <paramref name="expiresAfterSeconds"/> after now if given.
    /// </summary>
    public async Task<FileRecord> CreateGeneratedAsync(string project, string filename, string purpose, byte[] content, CancellationToken cancellationToken,
        long? expiresAfterSeconds = null)
    {
        ArgumentNullException.ThrowIfNull(content);
        using var stream = new MemoryStream(content, writable: false);
        using var blob = await blobs.StageAsync(stream, long.MaxValue, null, cancellationToken);
        var now = time.GetUtcNow().ToUnixTimeSeconds();
        var record = new FileRecord(ResourceId.New("file-"), project, filename, purpose, blob.Length, blob.Sha256,
            now, now + expiresAfterSeconds, "processed", null, null, null);
        blobs.Commit(blob, record.BlobKey);
        try
        {
            files.Insert(record);
        }
        catch
        {
            blobs.Delete(record.BlobKey);
            throw;
        }
        LogCreated(logger, record.Id, record.Project, record.Bytes, record.Status);
        return record;
    }

    public FileRecord Get(string project, string id) =>
        files.Find(project, id, time.GetUtcNow().ToUnixTimeSeconds()) ?? throw NotFound(id);

    public Page<FileRecord> List(string project, string? purpose, int? limit, string? order, string? after)
    {
        var take = RequestFields.ListLimit(limit, MaxListLimit, MaxListLimit);
        var ascending = RequestFields.Ascending(order, fallback: false);
        return files.List(project, string.IsNullOrEmpty(purpose) ? null : purpose, take, ascending, after, time.GetUtcNow().ToUnixTimeSeconds())
               ?? throw GpudException.Invalid($"No such File object: {after} (the 'after' cursor).", "after");
    }

    /// <summary>Opens a file's bytes for streaming; the caller disposes the stream.</summary>
    public (FileRecord File, Stream Content) OpenContent(string project, string id)
    {
        var file = Get(project, id);
        try
        {
            return (file, blobs.OpenRead(file.BlobKey));
        }
        catch (FileNotFoundException)
        {
            // The row exists but its bytes do not: the data dir was tampered with. Report it, do not serve garbage.
            LogMissingBlob(logger, id);
            throw;
        }
    }

    public void Delete(string project, string id)
    {
        if (!files.MarkDeleted(project, id, time.GetUtcNow().ToUnixTimeSeconds())) throw NotFound(id);
        blobs.Delete(FileRecord.BlobKeyFor(id));
        LogDeleted(logger, id, project);
    }

    /// <summary>Removes files whose <c>expires_after</c> has passed (they are already invisible to the API).</summary>
    public int DeleteExpired()
    {
        var expired = files.MarkExpiredDeleted(time.GetUtcNow().ToUnixTimeSeconds());
        foreach (var id in expired) blobs.Delete(FileRecord.BlobKeyFor(id));
        if (expired.Count > 0) LogExpired(logger, expired.Count);
        return expired.Count;
    }

    /// <summary>
    /// Start-up repair after a crash: removes half-written uploads and blobs that no live file owns (a crash between
    /// blob rename and row insert, or between tombstone and blob delete). Run before serving requests.
    /// </summary>
    public (int Temporary, int Orphaned) Recover()
    {
        var temporary = blobs.SweepTemporaryFiles();
        var live = files.LiveIds();
        var orphaned = 0;
        foreach (var key in blobs.Keys("files/").ToList())
        {
            if (live.Contains(key["files/".Length..])) continue;
            blobs.Delete(key);
            orphaned++;
        }
        if (temporary + orphaned > 0) LogRecovered(logger, temporary, orphaned);
        return (temporary, orphaned);
    }

    public static GpudException NotFound(string id) => GpudException.NotFound($"No such File object: {id}", "id");

    private static string FormatName(TrainingDataFormat format) => format switch
    {
        TrainingDataFormat.Chat => "chat",
        TrainingDataFormat.PromptCompletion => "prompt_completion",
        _ => "preference",
    };

    [LoggerMessage(Level = LogLevel.Information, Message = "File {FileId} created in project {Project}: {Bytes} bytes, status {Status}")]
    private static partial void LogCreated(ILogger logger, string fileId, string project, long bytes, string status);

    [LoggerMessage(Level = LogLevel.Information, Message = "File {FileId} deleted from project {Project}")]
    private static partial void LogDeleted(ILogger logger, string fileId, string project);

    [LoggerMessage(Level = LogLevel.Error, Message = "File {FileId} has a database row but no bytes on disk")]
    private static partial void LogMissingBlob(ILogger logger, string fileId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Deleted {Count} expired files")]
    private static partial void LogExpired(ILogger logger, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Recovered from an unclean stop: removed {Temporary} partial uploads and {Orphaned} unowned blobs")]
    private static partial void LogRecovered(ILogger logger, int temporary, int orphaned);
}
