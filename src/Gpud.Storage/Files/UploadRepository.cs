using Gpud.Storage.Sqlite;
using Microsoft.Data.Sqlite;

namespace Gpud.Storage.Files;

/// <summary>An upload in parts: the file it will become (name, purpose, size), where it stands, and the file it became.</summary>
public sealed record UploadRecord(
    string Id, string Project, string Filename, string Purpose, long Bytes, string MimeType, long CreatedAt, long ExpiresAt,
    long? FileExpiresAfter, string Status, string? FileId)
{
    /// <summary>Where a part's bytes live in the blob store.</summary>
    public static string PartKey(string uploadId, string partId) => $"uploads/{uploadId}.{partId}"; // flat: no directory per upload to leave behind
}

/// <summary>One part of an upload; its bytes are the blob at <see cref="UploadRecord.PartKey"/>.</summary>
public sealed record UploadPartRecord(string Id, string UploadId, long CreatedAt, long Bytes);

/// <summary>Uploads and their parts. Status changes are conditional on the current status, so a cancel and a complete cannot both land.</summary>
public sealed class UploadRepository(GpudDatabase database)
{
    private const string Columns = "id, project, filename, purpose, bytes, mime_type, created_at, expires_at, file_expires_after, status, file_id";

    public void Insert(UploadRecord upload)
    {
        ArgumentNullException.ThrowIfNull(upload);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"INSERT INTO uploads ({Columns}) VALUES ($id, $project, $filename, $purpose, $bytes, $mime, $created, $expires, $fileExpires, $status, NULL)";
        command.Parameters.AddWithValue("$id", upload.Id);
        command.Parameters.AddWithValue("$project", upload.Project);
        command.Parameters.AddWithValue("$filename", upload.Filename);
        command.Parameters.AddWithValue("$purpose", upload.Purpose);
        command.Parameters.AddWithValue("$bytes", upload.Bytes);
        command.Parameters.AddWithValue("$mime", upload.MimeType);
        command.Parameters.AddWithValue("$created", upload.CreatedAt);
        command.Parameters.AddWithValue("$expires", upload.ExpiresAt);
        command.Parameters.AddWithValue("$fileExpires", (object?)upload.FileExpiresAfter ?? DBNull.Value);
        command.Parameters.AddWithValue("$status", upload.Status);
        command.ExecuteNonQuery();
    }

    public UploadRecord? Find(string project, string id)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM uploads WHERE id = $id AND project = $project";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$project", project);
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    }

    public void InsertPart(UploadPartRecord part)
    {
        ArgumentNullException.ThrowIfNull(part);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO upload_parts (id, upload_id, created_at, bytes) VALUES ($id, $upload, $created, $bytes)";
        command.Parameters.AddWithValue("$id", part.Id);
        command.Parameters.AddWithValue("$upload", part.UploadId);
        command.Parameters.AddWithValue("$created", part.CreatedAt);
        command.Parameters.AddWithValue("$bytes", part.Bytes);
        command.ExecuteNonQuery();
    }

    public List<UploadPartRecord> Parts(string uploadId)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id, upload_id, created_at, bytes FROM upload_parts WHERE upload_id = $upload ORDER BY seq";
        command.Parameters.AddWithValue("$upload", uploadId);
        var parts = new List<UploadPartRecord>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) parts.Add(new UploadPartRecord(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.GetInt64(3)));
        return parts;
    }

    /// <summary>Ends a pending upload (completed with its file, cancelled or expired); false if it was not pending.</summary>
    public bool End(string id, string status, string? fileId)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE uploads SET status = $status, file_id = $file WHERE id = $id AND status = 'pending'";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$status", status);
        command.Parameters.AddWithValue("$file", (object?)fileId ?? DBNull.Value);
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>Pending uploads whose hour ran out before <paramref name="now"/>.</summary>
    public List<string> PendingExpiredBefore(long now)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id FROM uploads WHERE status = 'pending' AND expires_at <= $now";
        command.Parameters.AddWithValue("$now", now);
        var ids = new List<string>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) ids.Add(reader.GetString(0));
        return ids;
    }

    /// <summary>The ids of parts whose upload is still pending (their blobs are kept; any other part blob is litter).</summary>
    public HashSet<string> LivePartKeys()
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT p.upload_id, p.id FROM upload_parts p JOIN uploads u ON u.id = p.upload_id WHERE u.status = 'pending'";
        var keys = new HashSet<string>(StringComparer.Ordinal);
        using var reader = command.ExecuteReader();
        while (reader.Read()) keys.Add(UploadRecord.PartKey(reader.GetString(0), reader.GetString(1)));
        return keys;
    }

    private static UploadRecord Read(SqliteDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetInt64(4), r.GetString(5), r.GetInt64(6), r.GetInt64(7),
            r.IsDBNull(8) ? null : r.GetInt64(8), r.GetString(9), r.IsDBNull(10) ? null : r.GetString(10));
}
