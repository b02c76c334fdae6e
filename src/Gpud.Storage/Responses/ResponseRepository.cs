using Gpud.Storage.Sqlite;
using Microsoft.Data.Sqlite;

namespace Gpud.Storage.Responses;

/// <summary>
/// A stored response of the Responses API: the input items of its own request (not those of the responses before it,
/// which <see cref="PreviousId"/> reaches) and the response object, both as JSON.
/// </summary>
public sealed record ResponseRecord(string Id, string Project, long CreatedAt, string? PreviousId, string Input, string Response);

/// <summary>Stored responses. A deleted response is gone (its row removed): deleting is how a client removes content.</summary>
public sealed class ResponseRepository(GpudDatabase database)
{
    private const string Columns = "id, project, created_at, previous_id, input, response";

    public void Insert(ResponseRecord response)
    {
        ArgumentNullException.ThrowIfNull(response);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"INSERT INTO responses ({Columns}) VALUES ($id, $project, $created, $previous, $input, $response)";
        command.Parameters.AddWithValue("$id", response.Id);
        command.Parameters.AddWithValue("$project", response.Project);
        command.Parameters.AddWithValue("$created", response.CreatedAt);
        command.Parameters.AddWithValue("$previous", (object?)response.PreviousId ?? DBNull.Value);
        command.Parameters.AddWithValue("$input", response.Input);
        command.Parameters.AddWithValue("$response", response.Response);
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
        return reader.Read() ? new ResponseRecord(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.IsDBNull(3) ? null : reader.GetString(3), reader.GetString(4), reader.GetString(5)) : null;
    }

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
