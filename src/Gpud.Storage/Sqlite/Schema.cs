namespace Gpud.Storage.Sqlite;

/// <summary>
/// The database schema as an ordered list of migrations. Never edit a released step: append a new one. Each step
/// runs in its own transaction together with the <c>user_version</c> bump, so a crash leaves the old or new schema.
/// </summary>
public static class Schema
{
    public static IReadOnlyList<Migration> Migrations { get; } =
    [
        new(1, "files", """
            CREATE TABLE files (
                seq            INTEGER PRIMARY KEY AUTOINCREMENT,
                id             TEXT    NOT NULL UNIQUE,
                project        TEXT    NOT NULL,
                filename       TEXT    NOT NULL,
                purpose        TEXT    NOT NULL,
                bytes          INTEGER NOT NULL,
                sha256         TEXT    NOT NULL,
                created_at     INTEGER NOT NULL,
                expires_at     INTEGER,
                status         TEXT    NOT NULL,
                status_details TEXT,
                deleted_at     INTEGER
            );
            CREATE INDEX files_by_project ON files (project, seq) WHERE deleted_at IS NULL;
            """),
        new(2, "training-file statistics", """
            ALTER TABLE files ADD COLUMN data_format   TEXT;
            ALTER TABLE files ADD COLUMN example_count INTEGER;
            """),
    ];

    public static int LatestVersion => Migrations[^1].Version;
}
