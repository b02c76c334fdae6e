using Microsoft.Data.Sqlite;

namespace Gpud.Storage.Sqlite;

/// <summary>
/// The daemon's SQLite database: opens pooled connections with the pragmas every connection needs and applies
/// schema migrations. WAL lets readers (list endpoints) run while a writer commits; <c>synchronous=FULL</c> makes a
/// committed transaction survive power loss, not only a killed process.
/// </summary>
public sealed class GpudDatabase
{
    private readonly string _connectionString;

    public GpudDatabase(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = Path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            ForeignKeys = true,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
    }

    public string Path { get; }

    public SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        using var pragmas = connection.CreateCommand();
        pragmas.CommandText = "PRAGMA busy_timeout = 5000; PRAGMA synchronous = FULL;";
        pragmas.ExecuteNonQuery();
        return connection;
    }

    /// <summary>Brings the schema to <paramref name="migrations"/>' last version. Returns the versions applied.</summary>
    /// <exception cref="InvalidOperationException">The database was written by a newer gpud.</exception>
    public IReadOnlyList<int> Migrate(IReadOnlyList<Migration>? migrations = null)
    {
        migrations ??= Schema.Migrations;
        System.IO.Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        using var connection = Open();
        using (var wal = connection.CreateCommand())
        {
            wal.CommandText = "PRAGMA journal_mode = WAL;";
            wal.ExecuteNonQuery();
        }

        var current = UserVersion(connection);
        var latest = migrations.Count == 0 ? 0 : migrations[^1].Version;
        if (current > latest)
            throw new InvalidOperationException(
                $"The database {Path} has schema version {current}, newer than this gpud understands ({latest}). " +
                "Run the gpud version that wrote it, or restore a backup.");

        var applied = new List<int>();
        foreach (var migration in migrations.Where(m => m.Version > current))
        {
            using var tx = connection.BeginTransaction();
            using var command = connection.CreateCommand();
            command.Transaction = tx;
            command.CommandText = migration.Sql + $"\nPRAGMA user_version = {migration.Version};";
            command.ExecuteNonQuery();
            tx.Commit();
            applied.Add(migration.Version);
        }
        return applied;
    }

    public int SchemaVersion()
    {
        using var connection = Open();
        return UserVersion(connection);
    }

    /// <summary>True if a write transaction can be taken and committed now (for readiness probes).</summary>
    public bool CanWrite()
    {
        try
        {
            using var connection = Open();
            using var tx = connection.BeginTransaction(deferred: false);
            tx.Commit();
            return true;
        }
        catch (SqliteException)
        {
            return false;
        }
    }

    private static int UserVersion(SqliteConnection connection)
    {
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA user_version;";
        return Convert.ToInt32(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
    }
}
