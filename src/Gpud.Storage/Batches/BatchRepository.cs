using Gpud.Storage.Common;
using Gpud.Storage.Sqlite;
using Microsoft.Data.Sqlite;

namespace Gpud.Storage.Batches;

/// <summary>
/// A batch's row: what was asked (endpoint, input file, window), where it stands (status and the time it reached each),
/// its request counts and token totals, and, once finalized, its output and error files. <see cref="Errors"/> is the
/// JSON list of input-file problems that failed it.
/// </summary>
public sealed record BatchRecord(
    string Id,
    string Project,
    string Endpoint,
    string InputFileId,
    string CompletionWindow,
    string Status,
    long CreatedAt,
    long ExpiresAt,
    string? Metadata,
    long? OutputExpiresAfter)
{
    public string? Model { get; init; }
    public long? InProgressAt { get; init; }
    public long? FinalizingAt { get; init; }
    public long? CompletedAt { get; init; }
    public long? FailedAt { get; init; }
    public long? ExpiredAt { get; init; }
    public long? CancellingAt { get; init; }
    public long? CancelledAt { get; init; }
    public string? OutputFileId { get; init; }
    public string? ErrorFileId { get; init; }
    public int Total { get; init; }
    public int Completed { get; init; }
    public int Failed { get; init; }
    public long InputTokens { get; init; }
    public long OutputTokens { get; init; }
    public string? Errors { get; init; }
}

/// <summary>
/// A status change and what comes with it; null fields stay as they are. Each timestamp is set once, with its status.
/// </summary>
public sealed record BatchChanges(string Status)
{
    public string? Model { get; init; }
    public long? InProgressAt { get; init; }
    public long? FinalizingAt { get; init; }
    public long? CompletedAt { get; init; }
    public long? FailedAt { get; init; }
    public long? ExpiredAt { get; init; }
    public long? CancellingAt { get; init; }
    public long? CancelledAt { get; init; }
    public int? Total { get; init; }
    public string? Errors { get; init; }
}

/// <summary>
/// Batches. Status changes are conditional on the current status (<see cref="Transition"/>), so a cancel racing the
/// runner's own step lands exactly once; progress counts are written as requests finish.
/// </summary>
public sealed class BatchRepository(GpudDatabase database)
{
    private const string Columns =
        "id, project, endpoint, input_file_id, completion_window, status, created_at, expires_at, metadata, output_expires_after, model, " +
        "in_progress_at, finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at, output_file_id, error_file_id, " +
        "total, completed, failed, input_tokens, output_tokens, errors";

    public void Insert(BatchRecord batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO batches (id, project, endpoint, input_file_id, completion_window, status, created_at, expires_at, metadata, output_expires_after)
            VALUES ($id, $project, $endpoint, $input, $window, $status, $created, $expires, $metadata, $outputExpires)
            """;
        command.Parameters.AddWithValue("$id", batch.Id);
        command.Parameters.AddWithValue("$project", batch.Project);
        command.Parameters.AddWithValue("$endpoint", batch.Endpoint);
        command.Parameters.AddWithValue("$input", batch.InputFileId);
        command.Parameters.AddWithValue("$window", batch.CompletionWindow);
        command.Parameters.AddWithValue("$status", batch.Status);
        command.Parameters.AddWithValue("$created", batch.CreatedAt);
        command.Parameters.AddWithValue("$expires", batch.ExpiresAt);
        command.Parameters.AddWithValue("$metadata", (object?)batch.Metadata ?? DBNull.Value);
        command.Parameters.AddWithValue("$outputExpires", (object?)batch.OutputExpiresAfter ?? DBNull.Value);
        command.ExecuteNonQuery();
    }

    /// <summary>The batch, if it belongs to <paramref name="project"/>.</summary>
    public BatchRecord? Find(string project, string id) => Get(id) is { } batch && batch.Project == project ? batch : null;

    public BatchRecord? Get(string id)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM batches WHERE id = $id";
        command.Parameters.AddWithValue("$id", id);
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    }

    /// <summary>A project's batches, newest first; null when <paramref name="after"/> names no batch of the project.</summary>
    public Page<BatchRecord>? List(string project, int limit, string? after)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        var where = "project = $project";
        if (after is not null)
        {
            if (Keyset.CursorOf(connection, "batches", after, "project", project) is not { } seq) return null;
            where += " AND seq < $cursor";
            command.Parameters.AddWithValue("$cursor", seq);
        }
        command.CommandText = $"SELECT {Columns} FROM batches WHERE {where} ORDER BY seq DESC LIMIT $take";
        command.Parameters.AddWithValue("$project", project);
        return Keyset.ReadPage(command, limit, Read);
    }

    /// <summary>Batches in these statuses, oldest first.</summary>
    public List<BatchRecord> WithStatus(params string[] statuses)
    {
        ArgumentNullException.ThrowIfNull(statuses);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM batches WHERE status IN {SqlList.Bind(command, "s", statuses)} ORDER BY seq";
        var batches = new List<BatchRecord>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) batches.Add(Read(reader));
        return batches;
    }

    /// <summary>Applies <paramref name="changes"/> if the batch is in one of <paramref name="from"/>; returns the new row, or null if it was not.</summary>
    public BatchRecord? Transition(string id, IReadOnlyCollection<string> from, BatchChanges changes)
    {
        ArgumentNullException.ThrowIfNull(from);
        ArgumentNullException.ThrowIfNull(changes);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        var sets = new List<string> { "status = $status" };
        command.Parameters.AddWithValue("$status", changes.Status);
        void Set(string column, object? value)
        {
            if (value is null) return;
            sets.Add($"{column} = ${column}");
            command.Parameters.AddWithValue($"${column}", value);
        }
        Set("model", changes.Model);
        Set("in_progress_at", changes.InProgressAt);
        Set("finalizing_at", changes.FinalizingAt);
        Set("completed_at", changes.CompletedAt);
        Set("failed_at", changes.FailedAt);
        Set("expired_at", changes.ExpiredAt);
        Set("cancelling_at", changes.CancellingAt);
        Set("cancelled_at", changes.CancelledAt);
        Set("total", changes.Total);
        Set("errors", changes.Errors);
        command.Parameters.AddWithValue("$id", id);
        command.CommandText = $"UPDATE batches SET {string.Join(", ", sets)} WHERE id = $id AND status IN {SqlList.Bind(command, "from", from)}";
        return command.ExecuteNonQuery() == 1 ? Get(id) : null;
    }

    /// <summary>Records progress: requests answered so far, and their tokens.</summary>
    public void SetProgress(string id, int completed, int failed, long inputTokens, long outputTokens)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE batches SET completed = $completed, failed = $failed, input_tokens = $input, output_tokens = $output WHERE id = $id";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$completed", completed);
        command.Parameters.AddWithValue("$failed", failed);
        command.Parameters.AddWithValue("$input", inputTokens);
        command.Parameters.AddWithValue("$output", outputTokens);
        command.ExecuteNonQuery();
    }

    /// <summary>Records a finalized batch's output or error file (each once: a finalization redone after a crash skips it).</summary>
    public void SetFile(string id, string column, string fileId)
    {
        if (column is not ("output_file_id" or "error_file_id")) throw new ArgumentOutOfRangeException(nameof(column), column, "Not a file column.");
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"UPDATE batches SET {column} = $file WHERE id = $id";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$file", fileId);
        command.ExecuteNonQuery();
    }

    private static BatchRecord Read(SqliteDataReader r)
    {
        string? Text(int i) => r.IsDBNull(i) ? null : r.GetString(i);
        long? Long(int i) => r.IsDBNull(i) ? null : r.GetInt64(i);
        return new BatchRecord(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetString(5), r.GetInt64(6), r.GetInt64(7),
            Text(8), Long(9))
        {
            Model = Text(10),
            InProgressAt = Long(11),
            FinalizingAt = Long(12),
            CompletedAt = Long(13),
            FailedAt = Long(14),
            ExpiredAt = Long(15),
            CancellingAt = Long(16),
            CancelledAt = Long(17),
            OutputFileId = Text(18),
            ErrorFileId = Text(19),
            Total = r.GetInt32(20),
            Completed = r.GetInt32(21),
            Failed = r.GetInt32(22),
            InputTokens = r.GetInt64(23),
            OutputTokens = r.GetInt64(24),
            Errors = Text(25),
        };
    }
}
