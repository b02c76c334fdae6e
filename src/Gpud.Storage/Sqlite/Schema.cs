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
        new(3, "fine-tuning jobs, events and checkpoints", """
            CREATE TABLE fine_tuning_jobs (
                seq              INTEGER PRIMARY KEY AUTOINCREMENT,
                id               TEXT    NOT NULL UNIQUE,
                project          TEXT    NOT NULL,
                created_at       INTEGER NOT NULL,
                model            TEXT    NOT NULL,
                training_file    TEXT    NOT NULL,
                validation_file  TEXT,
                suffix           TEXT,
                seed             INTEGER NOT NULL,
                metadata         TEXT,
                method           TEXT    NOT NULL,
                status           TEXT    NOT NULL,
                queue_order      INTEGER,
                queued_at        INTEGER,
                started_at       INTEGER,
                error            TEXT,
                fine_tuned_model TEXT,
                finished_at      INTEGER,
                trained_tokens   INTEGER,
                result_files     TEXT,
                estimated_finish INTEGER,
                device           TEXT,
                stage            TEXT,
                progress         TEXT,
                device_seconds   REAL    NOT NULL DEFAULT 0,
                hourly_price     REAL,
                resume_step      INTEGER,
                dataset          TEXT
            );
            CREATE INDEX fine_tuning_jobs_by_project ON fine_tuning_jobs (project, seq);
            CREATE INDEX fine_tuning_jobs_queue ON fine_tuning_jobs (queue_order) WHERE queue_order IS NOT NULL;
            CREATE INDEX fine_tuning_jobs_active ON fine_tuning_jobs (status) WHERE status IN ('validating_files', 'queued', 'running');

            CREATE TABLE fine_tuning_events (
                seq        INTEGER PRIMARY KEY AUTOINCREMENT,
                id         TEXT    NOT NULL UNIQUE,
                job_id     TEXT    NOT NULL REFERENCES fine_tuning_jobs (id),
                created_at INTEGER NOT NULL,
                level      TEXT    NOT NULL,
                message    TEXT    NOT NULL,
                type       TEXT    NOT NULL,
                data       TEXT
            );
            CREATE INDEX fine_tuning_events_by_job ON fine_tuning_events (job_id, seq);

            CREATE TABLE fine_tuning_checkpoints (
                seq                         INTEGER PRIMARY KEY AUTOINCREMENT,
                id                          TEXT    NOT NULL UNIQUE,
                job_id                      TEXT    NOT NULL REFERENCES fine_tuning_jobs (id),
                created_at                  INTEGER NOT NULL,
                step_number                 INTEGER NOT NULL,
                fine_tuned_model_checkpoint TEXT    NOT NULL,
                metrics                     TEXT    NOT NULL,
                deleted_at                  INTEGER
            );
            CREATE INDEX fine_tuning_checkpoints_by_job ON fine_tuning_checkpoints (job_id, seq) WHERE deleted_at IS NULL;
            """),
        new(4, "deleted fine-tuned models and imported adapters", """
            ALTER TABLE fine_tuning_jobs ADD COLUMN model_deleted_at INTEGER;

            CREATE TABLE adapters (
                seq            INTEGER PRIMARY KEY AUTOINCREMENT,
                id             TEXT    NOT NULL UNIQUE,
                project        TEXT    NOT NULL,
                name           TEXT    NOT NULL,
                base_model     TEXT    NOT NULL,
                rank           INTEGER NOT NULL,
                target_modules TEXT    NOT NULL,
                bytes          INTEGER NOT NULL,
                created_at     INTEGER NOT NULL,
                deleted_at     INTEGER
            );
            CREATE UNIQUE INDEX adapters_by_name ON adapters (name) WHERE deleted_at IS NULL;
            """),
        new(5, "jobs that continue a fine-tuned model", """
            ALTER TABLE fine_tuning_jobs ADD COLUMN parent_model TEXT;
            """),
        new(6, "stored responses (the Responses API)", """
            CREATE TABLE responses (
                seq         INTEGER PRIMARY KEY AUTOINCREMENT,
                id          TEXT    NOT NULL UNIQUE,
                project     TEXT    NOT NULL,
                created_at  INTEGER NOT NULL,
                previous_id TEXT,
                input       TEXT    NOT NULL,
                response    TEXT    NOT NULL
            );
            """),
        new(7, "batches (the Batch API)", """
            CREATE TABLE batches (
                seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
                id                   TEXT    NOT NULL UNIQUE,
                project              TEXT    NOT NULL,
                endpoint             TEXT    NOT NULL,
                input_file_id        TEXT    NOT NULL,
                completion_window    TEXT    NOT NULL,
                status               TEXT    NOT NULL,
                created_at           INTEGER NOT NULL,
                expires_at           INTEGER NOT NULL,
                metadata             TEXT,
                output_expires_after INTEGER,
                model                TEXT,
                in_progress_at       INTEGER,
                finalizing_at        INTEGER,
                completed_at         INTEGER,
                failed_at            INTEGER,
                expired_at           INTEGER,
                cancelling_at        INTEGER,
                cancelled_at         INTEGER,
                output_file_id       TEXT,
                error_file_id        TEXT,
                total                INTEGER NOT NULL DEFAULT 0,
                completed            INTEGER NOT NULL DEFAULT 0,
                failed               INTEGER NOT NULL DEFAULT 0,
                input_tokens         INTEGER NOT NULL DEFAULT 0,
                output_tokens        INTEGER NOT NULL DEFAULT 0,
                errors               TEXT
            );
            CREATE INDEX batches_by_status ON batches (status, seq);
            """),
        new(8, "stored chat completions", """
            CREATE TABLE chat_completions (
                seq        INTEGER PRIMARY KEY AUTOINCREMENT,
                id         TEXT    NOT NULL UNIQUE,
                project    TEXT    NOT NULL,
                created_at INTEGER NOT NULL,
                model      TEXT    NOT NULL,
                metadata   TEXT,
                messages   TEXT    NOT NULL,
                completion TEXT    NOT NULL
            );
            CREATE INDEX chat_completions_by_project ON chat_completions (project, seq);
            """),
        new(9, "background responses", """
            ALTER TABLE responses ADD COLUMN background_status TEXT;
            CREATE INDEX responses_by_background_status ON responses (background_status) WHERE background_status IS NOT NULL;
            """),
        new(10, "uploads in parts (the Uploads API)", """
            CREATE TABLE uploads (
                seq                INTEGER PRIMARY KEY AUTOINCREMENT,
                id                 TEXT    NOT NULL UNIQUE,
                project            TEXT    NOT NULL,
                filename           TEXT    NOT NULL,
                purpose            TEXT    NOT NULL,
                bytes              INTEGER NOT NULL,
                mime_type          TEXT    NOT NULL,
                created_at         INTEGER NOT NULL,
                expires_at         INTEGER NOT NULL,
                file_expires_after INTEGER,
                status             TEXT    NOT NULL,
                file_id            TEXT
            );
            CREATE INDEX uploads_by_status ON uploads (status, expires_at);

            CREATE TABLE upload_parts (
                seq        INTEGER PRIMARY KEY AUTOINCREMENT,
                id         TEXT    NOT NULL UNIQUE,
                upload_id  TEXT    NOT NULL REFERENCES uploads (id),
                created_at INTEGER NOT NULL,
                bytes      INTEGER NOT NULL
            );
            CREATE INDEX upload_parts_by_upload ON upload_parts (upload_id, seq);
            """),
    ];

    public static int LatestVersion => Migrations[^1].Version;
}
