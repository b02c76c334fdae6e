using Gpud.Storage.Common;
using Gpud.Storage.Sqlite;
using Microsoft.Data.Sqlite;

namespace Gpud.Storage.ChatCompletions;

/// <summary>
/// A stored chat completion: the request's messages and the <c>chat.completion</c> object (both JSON), with the
/// metadata a client may change later.
/// </summary>
public sealed record ChatCompletionRecord(string Id, string Project, long CreatedAt, string Model, string? Metadata, string Messages, string Completion);

/// <summary>Stored chat completions. Deleting one removes its row: deleting is how a client removes content.</summary>
public sealed class ChatCompletionRepository(GpudDatabase database)
{
    private const string Columns = "id, project, created_at, model, metadata, messages, completion";

    public void Insert(ChatCompletionRecord completion)
    {
        ArgumentNullException.ThrowIfNull(completion);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"INSERT INTO chat_completions ({Columns}) VALUES ($id, $project, $created, $model, $metadata, $messages, $completion)";
        command.Parameters.AddWithValue("$id", completion.Id);
        command.Parameters.AddWithValue("$project", completion.Project);
        command.Parameters.AddWithValue("$created", completion.CreatedAt);
        command.Parameters.AddWithValue("$model", completion.Model);
        command.Parameters.AddWithValue("$metadata", (object?)completion.Metadata ?? DBNull.Value);
        command.Parameters.AddWithValue("$messages", completion.Messages);
        command.Parameters.AddWithValue("$completion", completion.Completion);
        command.ExecuteNonQuery();
    }

    /// <summary>The completion, unless it was created before <paramref name="createdAfter"/> (expired).</summary>
    public ChatCompletionRecord? Find(string project, string id, long createdAfter)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM chat_completions WHERE id = $id AND project = $project AND created_at >= $after";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$project", project);
        command.Parameters.AddWithValue("$after", createdAfter);
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    }

    /// <summary>
    /// One page of a project's completions created at or after <paramref name="createdAfter"/>, oldest first when
    /// <paramref name="ascending"/>, filtered by model and metadata pairs; null when <paramref name="after"/> names none.
    /// </summary>
    public Page<ChatCompletionRecord>? List(string project, int limit, string? after, bool ascending, long createdAfter, string? model,
        IReadOnlyDictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        var where = "project = $project AND created_at >= $createdAfter";
        if (after is not null)
        {
            if (Keyset.CursorOf(connection, "chat_completions", after, "project", project) is not { } seq) return null;
            where += ascending ? " AND seq > $cursor" : " AND seq < $cursor";
            command.Parameters.AddWithValue("$cursor", seq);
        }
        if (model is not null)
        {
            where += " AND model = $model";
            command.Parameters.AddWithValue("$model", model);
        }
        where += MetadataFilter.Where(command, metadata);
        command.CommandText = $"SELECT {Columns} FROM chat_completions WHERE {where} ORDER BY seq {(ascending ? "ASC" : "DESC")} LIMIT $take";
        command.Parameters.AddWithValue("$project", project);
        command.Parameters.AddWithValue("$createdAfter", createdAfter);
        return Keyset.ReadPage(command, limit, Read);
    }

    /// <summary>Replaces the metadata (null clears it); false when there is no such completion.</summary>
    public bool SetMetadata(string project, string id, string? metadata)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE chat_completions SET metadata = $metadata WHERE id = $id AND project = $project";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$project", project);
        command.Parameters.AddWithValue("$metadata", (object?)metadata ?? DBNull.Value);
        return command.ExecuteNonQuery() == 1;
    }

    public bool Delete(string project, string id)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM chat_completions WHERE id = $id AND project = $project";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$project", project);
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>Removes the completions created before <paramref name="cutoff"/> (Unix seconds); returns how many.</summary>
    public int DeleteCreatedBefore(long cutoff)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM chat_completions WHERE created_at < $cutoff";
        command.Parameters.AddWithValue("$cutoff", cutoff);
        return command.ExecuteNonQuery();
    }

    private static ChatCompletionRecord Read(SqliteDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetString(3), r.IsDBNull(4) ? null : r.GetString(4), r.GetString(5), r.GetString(6));
}
