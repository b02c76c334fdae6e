using Gpud.Storage.Sqlite;
using Microsoft.Data.Sqlite;

namespace Gpud.Storage.Adapters;

/// <summary>An adapter uploaded through <c>POST /v1/adapters</c>: served under <see cref="Name"/> within its project.</summary>
public sealed record AdapterRecord(string Id, string Project, string Name, string BaseModel, int Rank, string TargetModules, long Bytes, long CreatedAt);

/// <summary>Uploaded adapter rows. Names are unique among live adapters; deleted rows stay as tombstones.</summary>
public sealed class AdapterRepository(GpudDatabase database)
{
    private const string Columns = "id, project, name, base_model, rank, target_modules, bytes, created_at";

    /// <summary>Inserts the row; false if a live adapter already has the name.</summary>
    public bool TryInsert(AdapterRecord adapter)
    {
        ArgumentNullException.ThrowIfNull(adapter);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"INSERT INTO adapters ({Columns}) VALUES ($id, $project, $name, $base, $rank, $targets, $bytes, $created)";
        command.Parameters.AddWithValue("$id", adapter.Id);
        command.Parameters.AddWithValue("$project", adapter.Project);
        command.Parameters.AddWithValue("$name", adapter.Name);
        command.Parameters.AddWithValue("$base", adapter.BaseModel);
        command.Parameters.AddWithValue("$rank", adapter.Rank);
        command.Parameters.AddWithValue("$targets", adapter.TargetModules);
        command.Parameters.AddWithValue("$bytes", adapter.Bytes);
        command.Parameters.AddWithValue("$created", adapter.CreatedAt);
        try
        {
            command.ExecuteNonQuery();
            return true;
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19) // SQLITE_CONSTRAINT: the name is taken
        {
            return false;
        }
    }

    /// <summary>The live adapter with this name, whatever its project (callers check the project).</summary>
    public AdapterRecord? FindByName(string name)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM adapters WHERE name = $name AND deleted_at IS NULL";
        command.Parameters.AddWithValue("$name", name);
        using var reader = command.ExecuteReader();
        return reader.Read() ? Read(reader) : null;
    }

    public List<AdapterRecord> List(string project)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {Columns} FROM adapters WHERE project = $project AND deleted_at IS NULL ORDER BY seq";
        command.Parameters.AddWithValue("$project", project);
        var list = new List<AdapterRecord>();
        using var reader = command.ExecuteReader();
        while (reader.Read()) list.Add(Read(reader));
        return list;
    }

    public bool Delete(string id, long now)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE adapters SET deleted_at = $now WHERE id = $id AND deleted_at IS NULL";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$now", now);
        return command.ExecuteNonQuery() == 1;
    }

    private static AdapterRecord Read(SqliteDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetInt32(4), r.GetString(5), r.GetInt64(6), r.GetInt64(7));
}
