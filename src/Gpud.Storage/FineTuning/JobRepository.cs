using Gpud.Storage.Common;
using Gpud.Storage.Sqlite;
using Microsoft.Data.Sqlite;

namespace Gpud.Storage.FineTuning;

/// <summary>
/// Fine-tuning jobs, their events and checkpoints. A state change and the event that announces it commit in one
/// transaction, and transitions are conditional on the current status (<see cref="Update"/>), so a cancel racing a
/// job's completion has exactly one winner and the loser sees it.
/// </summary>
public sealed class JobRepository(GpudDatabase database)
{
    private const string Columns =
        "id, project, created_at, model, training_file, validation_file, suffix, seed, metadata, method, status, queue_order, " +
        "queued_at, started_at, error, fine_tuned_model, finished_at, trained_tokens, result_files, estimated_finish, device, " +
        "stage, progress, device_seconds, hourly_price, resume_step, dataset, model_deleted_at, parent_model";

    /// <summary>Nullable columns a <see cref="JobChanges.Clear"/> may reset.</summary>
    private static readonly HashSet<string> ClearableColumns =
    [
        "queue_order", "queued_at", "started_at", "error", "fine_tuned_model", "finished_at", "trained_tokens", "result_files",
        "estimated_finish", "device", "stage", "progress", "hourly_price", "resume_step", "dataset",
    ];

    /// <summary>
    /// Inserts a job. Its <c>created_at</c> is never earlier than an already stored job's, so listing in insertion order
    /// is also listing by creation time when requests race (their clocks are read before the write lock).
    /// </summary>
    public void Insert(JobRecord job, params IReadOnlyList<JobEventRecord> events)
    {
        ArgumentNullException.ThrowIfNull(job);
        using var connection = database.Open();
        using var tx = connection.BeginTransaction(deferred: false);
        using var command = connection.CreateCommand();
        command.Transaction = tx;
        command.CommandText = $"""
            INSERT INTO fine_tuning_jobs (id, project, created_at, model, training_file, validation_file, suffix, seed, metadata, method, status, parent_model)
            VALUES ($id, $project, MAX($created_at, COALESCE((SELECT MAX(created_at) FROM fine_tuning_jobs), 0)), $model, $training_file,
                    $validation_file, $suffix, $seed, $metadata, $method, $status, $parent_model)
            """;
        command.Parameters.AddWithValue("$id", job.Id);
        command.Parameters.AddWithValue("$project", job.Project);
        command.Parameters.AddWithValue("$created_at", job.CreatedAt);
        command.Parameters.AddWithValue("$model", job.Model);
        command.Parameters.AddWithValue("$training_file", job.TrainingFile);
        command.Parameters.AddWithValue("$validation_file", (object?)job.ValidationFile ?? DBNull.Value);
        command.Parameters.AddWithValue("$suffix", (object?)job.Suffix ?? DBNull.Value);
        command.Parameters.AddWithValue("$seed", job.Seed);
        command.Parameters.AddWithValue("$metadata", (object?)job.Metadata ?? DBNull.Value);
        command.Parameters.AddWithValue("$method", job.Method);
        command.Parameters.AddWithValue("$status", job.Status);
        command.Parameters.AddWithValue("$parent_model", (object?)job.ParentModel ?? DBNull.Value);
        command.ExecuteNonQuery();
        foreach (var e in events) InsertEvent(connection, tx, e);
        tx.Commit();
    }

    /// <summary>The job with this id in this project, or null (also for another project's job).</summary>
    public JobRecord? Find(string project, string id)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM fine_tuning_jobs WHERE id = $id AND project = $project";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$project", project);
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    }

    /// <summary>The job with this id in any project (for the scheduler).</summary>
    public JobRecord? Get(string id)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM fine_tuning_jobs WHERE id = $id";
        command.Parameters.AddWithValue("$id", id);
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    }

    /// <summary>Jobs newest first, after the cursor job if one is given, optionally only those whose metadata matches.</summary>
    /// <returns>null if <paramref name="after"/> names no job of this project.</returns>
    public Page<JobRecord>? List(string project, int limit, string? after, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        var where = "project = $project";
        if (after is not null)
        {
            if (Keyset.CursorOf(connection, "fine_tuning_jobs", after, "project", project) is not { } seq) return null;
            where += " AND seq < $cursor";
            command.Parameters.AddWithValue("$cursor", seq);
        }
        where += MetadataFilter.Where(command, metadata);
        command.CommandText = $"SELECT {Columns} FROM fine_tuning_jobs WHERE {where} ORDER BY seq DESC LIMIT $take";
        command.Parameters.AddWithValue("$project", project);
        return Keyset.ReadPage(command, limit, Read);
    }

    /// <summary>Jobs in these statuses, oldest first (queued ones in queue order).</summary>
    public List<JobRecord> WithStatus(params string[] statuses)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM fine_tuning_jobs WHERE status IN {SqlList.Bind(command, "s", statuses)} ORDER BY COALESCE(queue_order, 0), seq";
        var jobs = new List<JobRecord>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) jobs.Add(Read(reader));
        return jobs;
    }

    /// <summary>The oldest job in this status (queued jobs: the head of the queue), or null.</summary>
    public JobRecord? FirstWithStatus(string status)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = status == "queued"
            ? $"SELECT {Columns} FROM fine_tuning_jobs WHERE queue_order IS NOT NULL AND status = 'queued' ORDER BY queue_order LIMIT 1"
            : $"SELECT {Columns} FROM fine_tuning_jobs WHERE status = $status ORDER BY seq LIMIT 1";
        command.Parameters.AddWithValue("$status", status);
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    }

    /// <summary>Ids of queued jobs in queue order.</summary>
    public List<string> QueuedIds()
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id FROM fine_tuning_jobs WHERE queue_order IS NOT NULL AND status = 'queued' ORDER BY queue_order";
        var ids = new List<string>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) ids.Add(reader.GetString(0));
        return ids;
    }

    public Dictionary<string, long> CountByStatus()
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT status, COUNT(*) FROM fine_tuning_jobs GROUP BY status";
        var counts = new Dictionary<string, long>(StringComparer.Ordinal);
        using var reader = command.ExecuteReader();
        while (reader.Read()) counts[reader.GetString(0)] = reader.GetInt64(1);
        return counts;
    }

    /// <summary>
    /// Applies <paramref name="changes"/> if the job's status is one of <paramref name="whenStatusIn"/> (any status when
    /// null), together with <paramref name="events"/> and an optional checkpoint, in one transaction.
    /// </summary>
    /// <returns>The job as it is now if the change was made; null if the job was not in an expected status.</returns>
    public JobRecord? Update(string id, IReadOnlyCollection<string>? whenStatusIn, JobChanges changes,
        IReadOnlyList<JobEventRecord>? events = null, JobCheckpointRecord? checkpoint = null)
    {
        ArgumentNullException.ThrowIfNull(changes);
        using var connection = database.Open();
        using var tx = connection.BeginTransaction(deferred: false);
        using var command = connection.CreateCommand();
        command.Transaction = tx;
        var sets = new List<string>();
        void Set(string column, object? value)
        {
            if (value is null) return;
            sets.Add($"{column} = ${column}");
            command.Parameters.AddWithValue($"${column}", value);
        }
        Set("status", changes.Status);
        Set("method", changes.Method);
        Set("error", changes.Error);
        Set("fine_tuned_model", changes.FineTunedModel);
        Set("finished_at", changes.FinishedAt);
        Set("started_at", changes.StartedAt);
        Set("trained_tokens", changes.TrainedTokens);
        Set("result_files", changes.ResultFiles);
        Set("estimated_finish", changes.EstimatedFinish);
        Set("device", changes.Device);
        Set("stage", changes.Stage);
        Set("progress", changes.Progress);
        Set("device_seconds", changes.DeviceSeconds);
        Set("hourly_price", changes.HourlyPrice);
        Set("resume_step", changes.ResumeStep);
        Set("dataset", changes.Dataset);
        Set("queued_at", changes.QueuedAt);
        foreach (var column in changes.Clear)
        {
            if (!ClearableColumns.Contains(column))
                throw new ArgumentException($"{column} is not a nullable job column.", nameof(changes));
            sets.Add($"{column} = NULL");
        }
        switch (changes.Queue)
        {
            case QueuePlacement.Tail:
                sets.Add("queue_order = (SELECT COALESCE(MAX(queue_order), 0) + 1 FROM fine_tuning_jobs)");
                break;
            case QueuePlacement.Head:
                sets.Add("queue_order = (SELECT COALESCE(MIN(queue_order), 1) - 1 FROM fine_tuning_jobs)");
                break;
            case QueuePlacement.Remove:
                sets.Add("queue_order = NULL");
                break;
        }

        var where = "id = $id";
        command.Parameters.AddWithValue("$id", id);
        if (whenStatusIn is not null)
        {
            where += $" AND status IN {SqlList.Bind(command, "when", whenStatusIn)}";
        }
        command.CommandText = sets.Count == 0
            ? $"SELECT {Columns} FROM fine_tuning_jobs WHERE {where}"
            : $"UPDATE fine_tuning_jobs SET {string.Join(", ", sets)} WHERE {where} RETURNING {Columns}";
        JobRecord? updated;
        using (var reader = command.ExecuteReader())
        {
            updated = reader.Read() ? Read(reader) : null;
        }
        if (updated is null) return null;
        foreach (var e in events ?? []) InsertEvent(connection, tx, e);
        if (checkpoint is not null) InsertCheckpoint(connection, tx, checkpoint);
        tx.Commit();
        return updated;
    }

    public void AddEvents(IReadOnlyList<JobEventRecord> events)
    {
        ArgumentNullException.ThrowIfNull(events);
        using var connection = database.Open();
        using var tx = connection.BeginTransaction(deferred: false);
        foreach (var e in events) InsertEvent(connection, tx, e);
        tx.Commit();
    }

    /// <summary>Events newest first, older than the cursor event if one is given.</summary>
    /// <returns>null if <paramref name="after"/> names no event of this job.</returns>
    public Page<JobEventRecord>? Events(string jobId, int limit, string? after) =>
        NewestFirst("fine_tuning_events", "id, job_id, created_at, level, message, type, data", "job_id = $job", jobId, limit, after,
            r => new JobEventRecord(r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetString(3), r.GetString(4), r.GetString(5),
                r.IsDBNull(6) ? null : r.GetString(6)));

    /// <summary>Live checkpoints newest first, older than the cursor checkpoint if one is given.</summary>
    /// <returns>null if <paramref name="after"/> names no checkpoint of this job.</returns>
    public Page<JobCheckpointRecord>? Checkpoints(string jobId, int limit, string? after) =>
        NewestFirst("fine_tuning_checkpoints", "id, job_id, created_at, step_number, fine_tuned_model_checkpoint, metrics",
            "job_id = $job AND deleted_at IS NULL", jobId, limit, after,
            r => new JobCheckpointRecord(r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetInt32(3), r.GetString(4), r.GetString(5)));

    /// <summary>Keyset pagination over a job's rows: newest first, strictly older than the <paramref name="after"/> row.</summary>
    private Page<T>? NewestFirst<T>(string table, string columns, string scope, string jobId, int limit, string? after, Func<SqliteDataReader, T> read)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        var where = scope;
        if (after is not null)
        {
            if (Keyset.CursorOf(connection, table, after, "job_id", jobId) is not { } seq) return null;
            where += " AND seq < $cursor";
            command.Parameters.AddWithValue("$cursor", seq);
        }
        command.CommandText = $"SELECT {columns} FROM {table} WHERE {where} ORDER BY seq DESC LIMIT $take";
        command.Parameters.AddWithValue("$job", jobId);
        return Keyset.ReadPage(command, limit, read);
    }

    /// <summary>Hides all but the newest <paramref name="keep"/> checkpoints of a job; returns the steps hidden.</summary>
    public List<int> PruneCheckpoints(string jobId, int keep, long now)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            UPDATE fine_tuning_checkpoints SET deleted_at = $now
            WHERE job_id = $job AND deleted_at IS NULL
              AND seq NOT IN (SELECT seq FROM fine_tuning_checkpoints WHERE job_id = $job AND deleted_at IS NULL ORDER BY seq DESC LIMIT $keep)
            RETURNING step_number
            """;
        command.Parameters.AddWithValue("$job", jobId);
        command.Parameters.AddWithValue("$keep", keep);
        command.Parameters.AddWithValue("$now", now);
        var steps = new List<int>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) steps.Add(reader.GetInt32(0));
        return steps;
    }

    /// <summary>The project's succeeded jobs whose fine-tuned model was not deleted, oldest first.</summary>
    public List<JobRecord> FineTunedModels(string project)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM fine_tuning_jobs WHERE project = $project AND status = 'succeeded' AND fine_tuned_model IS NOT NULL AND model_deleted_at IS NULL ORDER BY seq";
        command.Parameters.AddWithValue("$project", project);
        var jobs = new List<JobRecord>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) jobs.Add(Read(reader));
        return jobs;
    }

    /// <summary>Marks a succeeded job's fine-tuned model deleted; false if it is not a live fine-tuned model.</summary>
    public bool DeleteModel(string id, long now)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE fine_tuning_jobs SET model_deleted_at = $now WHERE id = $id AND status = 'succeeded' AND model_deleted_at IS NULL";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$now", now);
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>The project's live checkpoints (newest first per job), for the models list.</summary>
    public List<(JobCheckpointRecord Checkpoint, string BaseModel)> LiveCheckpoints(string project)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT c.id, c.job_id, c.created_at, c.step_number, c.fine_tuned_model_checkpoint, c.metrics, j.model
            FROM fine_tuning_checkpoints c JOIN fine_tuning_jobs j ON j.id = c.job_id
            WHERE j.project = $project AND c.deleted_at IS NULL
            ORDER BY c.seq
            """;
        command.Parameters.AddWithValue("$project", project);
        var list = new List<(JobCheckpointRecord, string)>();
        using var reader = command.ExecuteReader();
        while (reader.Read())
            list.Add((new JobCheckpointRecord(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.GetInt32(3), reader.GetString(4), reader.GetString(5)), reader.GetString(6)));
        return list;
    }

    /// <summary>Steps of the job's live checkpoints (their directories must be kept).</summary>
    public HashSet<int> LiveCheckpointSteps(string jobId)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT step_number FROM fine_tuning_checkpoints WHERE job_id = $job AND deleted_at IS NULL";
        command.Parameters.AddWithValue("$job", jobId);
        var steps = new HashSet<int>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) steps.Add(reader.GetInt32(0));
        return steps;
    }

    private static void InsertEvent(SqliteConnection connection, SqliteTransaction tx, JobEventRecord e)
    {
        using var command = connection.CreateCommand();
        command.Transaction = tx;
        command.CommandText = """
            INSERT INTO fine_tuning_events (id, job_id, created_at, level, message, type, data)
            VALUES ($id, $job, $created_at, $level, $message, $type, $data)
            """;
        command.Parameters.AddWithValue("$id", e.Id);
        command.Parameters.AddWithValue("$job", e.JobId);
        command.Parameters.AddWithValue("$created_at", e.CreatedAt);
        command.Parameters.AddWithValue("$level", e.Level);
        command.Parameters.AddWithValue("$message", e.Message);
        command.Parameters.AddWithValue("$type", e.Type);
        command.Parameters.AddWithValue("$data", (object?)e.Data ?? DBNull.Value);
        command.ExecuteNonQuery();
    }

    private static void InsertCheckpoint(SqliteConnection connection, SqliteTransaction tx, JobCheckpointRecord c)
    {
        using var command = connection.CreateCommand();
        command.Transaction = tx;
        command.CommandText = """
            INSERT INTO fine_tuning_checkpoints (id, job_id, created_at, step_number, fine_tuned_model_checkpoint, metrics)
            VALUES ($id, $job, $created_at, $step, $model, $metrics)
            """;
        command.Parameters.AddWithValue("$id", c.Id);
        command.Parameters.AddWithValue("$job", c.JobId);
        command.Parameters.AddWithValue("$created_at", c.CreatedAt);
        command.Parameters.AddWithValue("$step", c.StepNumber);
        command.Parameters.AddWithValue("$model", c.FineTunedModelCheckpoint);
        command.Parameters.AddWithValue("$metrics", c.Metrics);
        command.ExecuteNonQuery();
    }

    private static JobRecord Read(SqliteDataReader r)
    {
        string? S(int i) => r.IsDBNull(i) ? null : r.GetString(i);
        long? L(int i) => r.IsDBNull(i) ? null : r.GetInt64(i);
        return new JobRecord(r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetString(3), r.GetString(4), S(5), S(6), r.GetInt64(7),
            S(8), r.GetString(9), r.GetString(10), L(11), L(12), L(13), S(14), S(15), L(16), L(17), S(18), L(19), S(20), S(21), S(22),
            r.GetDouble(23), r.IsDBNull(24) ? null : r.GetDouble(24), r.IsDBNull(25) ? null : r.GetInt32(25), S(26), L(27), S(28));
    }
}
