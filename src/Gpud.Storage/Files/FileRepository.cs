using Gpud.Storage.Common;
using Gpud.Storage.Sqlite;
using Microsoft.Data.Sqlite;

namespace Gpud.Storage.Files;

/// <summary>
/// File rows. Deleted files stay as tombstones (<c>deleted_at</c>) so a pagination cursor that names a file deleted
/// between two pages still has a position; no query ever returns them.
/// </summary>
public sealed class FileRepository(GpudDatabase database)
{
    private const string Columns =
        "id, project, filename, purpose, bytes, sha256, created_at, expires_at, status, status_details, data_format, example_count";

    public void Insert(FileRecord file)
    {
        ArgumentNullException.ThrowIfNull(file);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            INSERT INTO files ({Columns})
            VALUES ($id, $project, $filename, $purpose, $bytes, $sha256, $created_at, $expires_at, $status, $status_details, $data_format, $example_count)
            """;
        command.Parameters.AddWithValue("$id", file.Id);
        command.Parameters.AddWithValue("$project", file.Project);
        command.Parameters.AddWithValue("$filename", file.Filename);
        command.Parameters.AddWithValue("$purpose", file.Purpose);
        command.Parameters.AddWithValue("$bytes", file.Bytes);
        command.Parameters.AddWithValue("$sha256", file.Sha256);
        command.Parameters.AddWithValue("$created_at", file.CreatedAt);
        command.Parameters.AddWithValue("$expires_at", (object?)file.ExpiresAt ?? DBNull.Value);
        command.Parameters.AddWithValue("$status", file.Status);
        command.Parameters.AddWithValue("$status_details", (object?)file.StatusDetails ?? DBNull.Value);
        command.Parameters.AddWithValue("$data_format", (object?)file.DataFormat ?? DBNull.Value);
        command.Parameters.AddWithValue("$example_count", (object?)file.ExampleCount ?? DBNull.Value);
        command.ExecuteNonQuery();
    }

    /// <summary>The live, unexpired file with this id in this project, or null (also for another project's file).</summary>
    public FileRecord? Find(string project, string id, long now)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM files WHERE id = $id AND project = $project AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > $now)";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$project", project);
        command.Parameters.AddWithValue("$now", now);
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    }

    /// <summary>Files newest first (or oldest first), after the cursor file if one is given.</summary>
    /// <returns>null if <paramref name="after"/> names no file of this project.</returns>
    public Page<FileRecord>? List(string project, string? purpose, int limit, bool ascending, string? after, long now)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        var comparison = ascending ? ">" : "<";
        var cursor = "";
        if (after is not null)
        {
            if (Keyset.CursorOf(connection, "files", after, "project", project) is not { } seq) return null;
            cursor = $"AND seq {comparison} $cursor";
            command.Parameters.AddWithValue("$cursor", seq);
        }
        command.CommandText = $"""
            SELECT {Columns} FROM files
            WHERE project = $project AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > $now) {(purpose is null ? "" : "AND purpose = $purpose")} {cursor}
            ORDER BY seq {(ascending ? "ASC" : "DESC")}
            LIMIT $take
            """;
        command.Parameters.AddWithValue("$project", project);
        if (purpose is not null) command.Parameters.AddWithValue("$purpose", purpose);
        command.Parameters.AddWithValue("$now", now);
        return Keyset.ReadPage(command, limit, Read);
    }

    /// <summary>Marks the file deleted. Returns false if no live file of this project has that id.</summary>
    public bool MarkDeleted(string project, string id, long deletedAt)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE files SET deleted_at = $now WHERE id = $id AND project = $project AND deleted_at IS NULL";
        command.Parameters.AddWithValue("$now", deletedAt);
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$project", project);
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>Tombstones every file whose expiry has passed; returns their ids (their blobs can then go).</summary>
    public List<string> MarkExpiredDeleted(long now)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE files SET deleted_at = $now WHERE deleted_at IS NULL AND expires_at <= $now RETURNING id";
        command.Parameters.AddWithValue("$now", now);
        var ids = new List<string>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) ids.Add(reader.GetString(0));
        return ids;
    }

    /// <summary>Ids of every live file in any project (to find blobs no row owns after a crash).</summary>
    public HashSet<string> LiveIds()
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id FROM files WHERE deleted_at IS NULL";
        var ids = new HashSet<string>(StringComparer.Ordinal);
        using var reader = command.ExecuteReader();
        while (reader.Read()) ids.Add(reader.GetString(0));
        return ids;
    }

    private static FileRecord Read(SqliteDataReader r) => new(
        r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetInt64(4), r.GetString(5), r.GetInt64(6),
        r.IsDBNull(7) ? null : r.GetInt64(7), r.GetString(8), r.IsDBNull(9) ? null : r.GetString(9),
        r.IsDBNull(10) ? null : r.GetString(10), r.IsDBNull(11) ? null : r.GetInt32(11));
}
