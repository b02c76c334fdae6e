using Gpud.Storage.Sqlite;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Storage;

public sealed class MigrationTests
{
    [Fact]
    public void A_new_database_gets_the_latest_schema_with_wal()
    {
        using var dir = new TempDir();
        var db = new GpudDatabase(dir["gpud.db"]);

        Assert.Equal(Schema.Migrations.Select(m => m.Version), db.Migrate());
        Assert.Equal(Schema.LatestVersion, db.SchemaVersion());
        Assert.Empty(db.Migrate()); // idempotent

        using var connection = db.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "PRAGMA journal_mode;";
        Assert.Equal("wal", command.ExecuteScalar());
        command.CommandText = "PRAGMA foreign_keys;";
        Assert.Equal(1L, command.ExecuteScalar());
    }

    [Fact]
    public void A_version_1_database_upgrades_without_losing_its_files()
    {
        using var dir = new TempDir();
        var db = new GpudDatabase(dir["gpud.db"]);
        db.Migrate(Schema.Migrations.Take(1).ToList());
        using (var connection = db.Open())
        using (var insert = connection.CreateCommand())
        {
            insert.CommandText = """
                INSERT INTO files (id, project, filename, purpose, bytes, sha256, created_at, status)
                VALUES ('file-old', 'default', 'train.jsonl', 'fine-tune', 42, 'abc', 1700000000, 'processed')
                """;
            insert.ExecuteNonQuery();
        }

        Assert.Equal(Schema.Migrations.Skip(1).Select(m => m.Version), new GpudDatabase(dir["gpud.db"]).Migrate());

        var file = new Gpud.Storage.Files.FileRepository(db).Find("default", "file-old", now: 0);
        Assert.NotNull(file);
        Assert.Equal(("train.jsonl", 42L, "processed"), (file.Filename, file.Bytes, file.Status));
        Assert.Null(file.ExampleCount); // the column version 2 added, empty for old rows
    }

    [Fact]
    public void A_database_from_a_newer_gpud_is_refused_not_damaged()
    {
        using var dir = new TempDir();
        var db = new GpudDatabase(dir["gpud.db"]);
        db.Migrate();
        using (var connection = db.Open())
        using (var bump = connection.CreateCommand())
        {
            bump.CommandText = $"PRAGMA user_version = {Schema.LatestVersion + 1};";
            bump.ExecuteNonQuery();
        }

        var e = Assert.Throws<InvalidOperationException>(() => db.Migrate());
        Assert.Contains("newer than this gpud understands", e.Message);
        Assert.Equal(Schema.LatestVersion + 1, db.SchemaVersion());
    }

    [Fact]
    public void A_failing_migration_leaves_the_previous_schema_intact()
    {
        using var dir = new TempDir();
        var db = new GpudDatabase(dir["gpud.db"]);
        db.Migrate(Schema.Migrations.Take(1).ToList());

        var broken = Schema.Migrations.Take(1).Append(new Migration(2, "broken", "ALTER TABLE files ADD COLUMN x TEXT; SELECT * FROM no_such_table;")).ToList();
        Assert.ThrowsAny<Exception>(() => db.Migrate(broken));

        Assert.Equal(1, db.SchemaVersion());
        Assert.Equal(Schema.Migrations.Skip(1).Select(m => m.Version), db.Migrate()); // the real step 2 still applies: the broken one left no column behind
    }
}
