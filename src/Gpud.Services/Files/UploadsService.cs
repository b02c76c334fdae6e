using System.Security.Cryptography;
using System.Text.Json;
using Gpud.Services.Errors;
using Gpud.Services.Ids;
using Gpud.Storage.Blobs;
using Gpud.Storage.Files;
using Microsoft.Extensions.Logging;

namespace Gpud.Services.Files;

/// <summary>
/// OpenAI's Uploads API: a file sent in parts (each up to 64 MB, in any order and in parallel), then completed into
/// an ordinary file — checked as an upload is (training JSONL), under the same size limit. A pending upload lasts an
/// hour; parts are blobs of their own until the upload completes, is cancelled or expires, when they are deleted.
/// </summary>
public sealed partial class UploadsService(
    UploadRepository uploads,
    FilesService files,
    BlobStore blobs,
    TimeProvider time,
    ILogger<UploadsService> logger)
{
    public const long MaxPartBytes = 64L * 1024 * 1024;
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(1);

    private static readonly HashSet<string> CreateFields = new(StringComparer.Ordinal) { "filename", "purpose", "bytes", "mime_type", "expires_after" };
    private static readonly HashSet<string> CompleteFields = new(StringComparer.Ordinal) { "part_ids", "md5" };

    public UploadRecord Create(string project, JsonElement body)
    {
        var fields = RequestFields.Known(body, CreateFields);
        var filename = RequestFields.RequiredString(fields, "filename");
        if (filename.Length > FilesService.MaxFilenameLength)
            throw RequestFields.Invalid("filename", $"must be at most {FilesService.MaxFilenameLength} characters", "string_above_max_length");
        var purpose = RequestFields.RequiredString(fields, "purpose");
        if (!FilePurposes.Uploadable.Contains(purpose))
            throw RequestFields.Invalid("purpose", $"must be one of {string.Join(", ", FilePurposes.Uploadable.Order().Select(p => $"'{p}'"))}");
        var mimeType = RequestFields.RequiredString(fields, "mime_type");
        if (!fields.TryGetValue("bytes", out var bytesField))
            throw GpudException.Invalid("Missing required parameter: 'bytes'.", "bytes", "missing_required_parameter");
        if (bytesField.ValueKind != JsonValueKind.Number || !bytesField.TryGetInt64(out var bytes))
            throw RequestFields.Invalid("bytes", "must be an integer", "invalid_type");
        if (bytes < 1 || bytes > files.MaxUploadBytes)
            throw RequestFields.Invalid("bytes", $"must be between 1 and {files.MaxUploadBytes} (Gpud:MaxUploadBytes)", "integer_out_of_range");
        var fileExpiresAfter = fields.TryGetValue("expires_after", out var expires) ? RequestFields.ExpiresAfter(expires, "expires_after") : (long?)null;
        var now = time.GetUtcNow().ToUnixTimeSeconds();
        var upload = new UploadRecord(ResourceId.New("upload_"), project, filename, purpose, bytes, mimeType, now, now + (long)Lifetime.TotalSeconds,
            fileExpiresAfter, "pending", null);
        uploads.Insert(upload);
        LogCreated(logger, upload.Id, project, bytes);
        return upload;
    }

    /// <summary>Stores one part (its bytes first, then its row: a crash between leaves a blob the start-up sweep removes).</summary>
    public async Task<UploadPartRecord> AddPartAsync(string project, string uploadId, Stream data, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(data);
        var upload = Pending(project, uploadId, "add a part to");
        // The parts together may not outgrow the declared size (which is within Gpud:MaxUploadBytes): the disk is bounded.
        var room = upload.Bytes - uploads.Parts(upload.Id).Sum(p => p.Bytes);
        StagedBlob blob;
        try
        {
            blob = await blobs.StageAsync(data, Math.Min(MaxPartBytes, room), null, cancellationToken);
        }
        catch (BlobTooLargeException)
        {
            throw room < MaxPartBytes
                ? GpudException.Invalid($"The parts would hold more than the upload's bytes ({upload.Bytes}); {Math.Max(room, 0)} bytes are left.", "data", "upload_too_large")
                : new GpudException(ErrorKind.PayloadTooLarge, $"A part may hold at most {MaxPartBytes} bytes (64 MB).", "data", "file_too_large");
        }
        using (blob)
        {
            var part = new UploadPartRecord(ResourceId.New("part_"), upload.Id, time.GetUtcNow().ToUnixTimeSeconds(), blob.Length);
            blobs.Commit(blob, UploadRecord.PartKey(upload.Id, part.Id));
            uploads.InsertPart(part);
            return part;
        }
    }

    /// <summary>
    /// Joins the parts, in the order <c>part_ids</c> gives, into a file (checked as any upload; the bytes must add up
    /// to the declared size and match <c>md5</c> if given), then ends the upload with it.
    /// </summary>
    public async Task<(UploadRecord Upload, Storage.Files.FileRecord File)> CompleteAsync(string project, string uploadId, JsonElement body,
        CancellationToken cancellationToken)
    {
        var fields = RequestFields.Known(body, CompleteFields);
        var upload = Pending(project, uploadId, "complete");
        if (!fields.TryGetValue("part_ids", out var ids) || ids.ValueKind != JsonValueKind.Array || ids.GetArrayLength() == 0
            || ids.EnumerateArray().Any(i => i.ValueKind != JsonValueKind.String))
            throw RequestFields.Invalid("part_ids", "must be a non-empty array of part ids", "invalid_type");
        string? md5 = null;
        if (fields.TryGetValue("md5", out var md5Field))
            md5 = md5Field.ValueKind == JsonValueKind.String ? md5Field.GetString()!.ToLowerInvariant() : throw RequestFields.Invalid("md5", "must be a string", "invalid_type");
        var parts = uploads.Parts(upload.Id).ToDictionary(p => p.Id, StringComparer.Ordinal);
        var ordered = new List<UploadPartRecord>();
        var used = new HashSet<string>(StringComparer.Ordinal);
        foreach (var id in ids.EnumerateArray().Select(i => i.GetString()!))
        {
            if (!parts.TryGetValue(id, out var part)) throw RequestFields.Invalid("part_ids", $"names '{id}', which is not a part of upload {upload.Id}");
            if (!used.Add(id)) throw RequestFields.Invalid("part_ids", $"names '{id}' twice");
            ordered.Add(part);
        }
        var total = ordered.Sum(p => p.Bytes);
        if (total != upload.Bytes)
            throw RequestFields.Invalid("part_ids", $"gives {total} bytes, but the upload was created with bytes {upload.Bytes}");

        using var md5Hash = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        FileUpload staged;
        await using (var joined = new JoinedParts(ordered.Select(p => UploadRecord.PartKey(upload.Id, p.Id)).ToList(), blobs, md5Hash))
            staged = await files.StageAsync(joined, cancellationToken);
        using (staged)
        {
            if (md5 is not null && Convert.ToHexStringLower(md5Hash.GetHashAndReset()) != md5)
                throw RequestFields.Invalid("md5", "does not match the parts' bytes", "md5_mismatch");
            var file = files.Create(project, staged, upload.Filename, upload.Purpose, upload.FileExpiresAfter is null ? null : "created_at", upload.FileExpiresAfter);
            if (!uploads.End(upload.Id, "completed", file.Id))
            {
                files.Delete(project, file.Id); // cancelled or expired meanwhile: the upload never became a file
                throw Ended(uploads.Find(project, uploadId)!, "complete");
            }
            DeleteParts(upload.Id);
            LogCompleted(logger, upload.Id, file.Id, ordered.Count);
            return (uploads.Find(project, uploadId)!, file);
        }
    }

    public UploadRecord Cancel(string project, string uploadId)
    {
        var upload = Pending(project, uploadId, "cancel");
        if (!uploads.End(upload.Id, "cancelled", null)) throw Ended(uploads.Find(project, uploadId)!, "cancel");
        DeleteParts(upload.Id);
        return uploads.Find(project, uploadId)!;
    }

    /// <summary>Pending uploads past their hour become <c>expired</c> and their parts go; returns how many.</summary>
    public int DeleteExpired()
    {
        var expired = 0;
        foreach (var id in uploads.PendingExpiredBefore(time.GetUtcNow().ToUnixTimeSeconds()))
        {
            if (!uploads.End(id, "expired", null)) continue;
            DeleteParts(id);
            expired++;
        }
        return expired;
    }

    /// <summary>Start-up repair: part blobs no pending upload owns (a crash mid-way through any of the above) are deleted.</summary>
    public int Recover()
    {
        var live = uploads.LivePartKeys();
        var removed = 0;
        foreach (var key in blobs.Keys("uploads/").Where(k => !live.Contains(k)).ToList())
        {
            blobs.Delete(key);
            removed++;
        }
        return removed;
    }

    private UploadRecord Pending(string project, string uploadId, string action)
    {
        var upload = uploads.Find(project, uploadId) ?? throw GpudException.NotFound($"No such upload: {uploadId}", "upload_id");
        if (upload.Status == "pending" && upload.ExpiresAt <= time.GetUtcNow().ToUnixTimeSeconds())
        {
            if (uploads.End(upload.Id, "expired", null)) DeleteParts(upload.Id);
            upload = uploads.Find(project, uploadId)!;
        }
        return upload.Status == "pending" ? upload : throw Ended(upload, action);
    }

    private static GpudException Ended(UploadRecord upload, string action) =>
        GpudException.Invalid($"Cannot {action} upload {upload.Id}: its status is '{upload.Status}'.", "upload_id", "invalid_upload_state");

    private void DeleteParts(string uploadId)
    {
        foreach (var part in uploads.Parts(uploadId)) blobs.Delete(UploadRecord.PartKey(uploadId, part.Id));
    }

    /// <summary>The parts' bytes one after another, hashed (MD5) as they pass; one part open at a time.</summary>
    private sealed class JoinedParts(List<string> keys, BlobStore blobs, IncrementalHash md5) : Stream
    {
        private int _current;
        private FileStream? _open;

        private FileStream? Current()
        {
            if (_open is null && _current < keys.Count) _open = blobs.OpenRead(keys[_current]);
            return _open;
        }

        private void Next()
        {
            _open?.Dispose();
            _open = null;
            _current++;
        }

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            while (Current() is { } part)
            {
                var read = part.Read(buffer);
                if (read > 0)
                {
                    md5.AppendData(buffer[..read]);
                    return read;
                }
                Next();
            }
            return 0;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            while (Current() is { } part)
            {
                var read = await part.ReadAsync(buffer, cancellationToken);
                if (read > 0)
                {
                    md5.AppendData(buffer.Span[..read]);
                    return read;
                }
                Next();
            }
            return 0;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) _open?.Dispose();
            base.Dispose(disposing);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Upload {UploadId} created in project {Project}: {Bytes} bytes to come in parts")]
    private static partial void LogCreated(ILogger logger, string uploadId, string project, long bytes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Upload {UploadId} completed from {Parts} parts into file {FileId}")]
    private static partial void LogCompleted(ILogger logger, string uploadId, string fileId, int parts);
}
