using Gpud.Storage.Common;
using Gpud.Storage.Sqlite;
using Microsoft.Data.Sqlite;

namespace Gpud.Storage.Responses;

/// <summary>
/// A stored response of the Responses API: the input items of its own request (not those of the responses before it,
/// which <see cref="PreviousId"/> reaches) and the response object, both as JSON.
/// </summary>
/// <param name="BackgroundStatus">For a background response, its status (<c>queued</c>, <c>in_progress</c>, then final); null otherwise.</param>
public sealed record ResponseRecord(string Id, string Project, long CreatedAt, string? PreviousId, string Input, string Response, string? BackgroundStatus = null);

/// <summary>Stored responses. A deleted response is gone (its row removed): deleting is how a client removes content.</summary>
public sealed class ResponseRepository(GpudDatabase database)
{
    private const string Columns = "id, project, created_at, previous_id, input, response, background_status";

    public void Insert(ResponseRecord response)
    {
        ArgumentNullException.ThrowIfNull(response);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"INSERT INTO responses ({Columns}) VALUES ($id, $project, $created, $previous, $input, $response, $background)";
        command.Parameters.AddWithValue("$id", response.Id);
        command.Parameters.AddWithValue("$project", response.Project);
        command.Parameters.AddWithValue("$created", response.CreatedAt);
        command.Parameters.AddWithValue("$previous", (object?)response.PreviousId ?? DBNull.Value);
        command.Parameters.AddWithValue("$input", response.Input);
        command.Parameters.AddWithValue("$response", response.Response);
        command.Parameters.AddWithValue("$background", (object?)response.BackgroundStatus ?? DBNull.Value);
        command.ExecuteNonQuery();
    }

    public ResponseRecord? Find(string project, string id)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM responses WHERE id = $id AND project = $project";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$project", project);
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    }

    /// <summary>
    /// Moves a background response from one of <paramref name="from"/> to <paramref name="status"/> with its new
    /// JSON; false when it was in none of them (a cancel or the end got there first).
    /// </summary>
    public bool AdvanceBackground(string id, IReadOnlyCollection<string> from, string status, string response)
    {
        ArgumentNullException.ThrowIfNull(from);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"UPDATE responses SET background_status = $status, response = $response WHERE id = $id AND background_status IN {SqlList.Bind(command, "from", from)}";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$status", status);
        command.Parameters.AddWithValue("$response", response);
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>Background responses in these statuses (any project).</summary>
    public List<ResponseRecord> WithBackgroundStatus(params string[] statuses)
    {
        ArgumentNullException.ThrowIfNull(statuses);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM responses WHERE background_status IN {SqlList.Bind(command, "s", statuses)}";
        var records = new List<ResponseRecord>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) records.Add(Read(reader));
        return records;
    }

    private static ResponseRecord Read(SqliteDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetInt64(2), r.IsDBNull(3) ? null : r.GetString(3), r.GetString(4), r.GetString(5), r.IsDBNull(6) ? null : r.GetString(6));

    /// <summary>Removes the responses created before <paramref name="cutoff"/> (Unix seconds); returns how many.</summary>
    public int DeleteCreatedBefore(long cutoff)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM responses WHERE created_at < $cutoff";
        command.Parameters.AddWithValue("$cutoff", cutoff);
        return command.ExecuteNonQuery();
    }

    public bool Delete(string project, string id)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM responses WHERE id = $id AND project = $project";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$project", project);
        return command.ExecuteNonQuery() == 1;
    }
}
