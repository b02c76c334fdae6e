namespace Gpud.Storage.Sqlite;

/// <summary>One forward-only schema step. <see cref="Version"/> is what <c>PRAGMA user_version</c> holds after it.</summary>
public sealed record Migration(int Version, string Description, string Sql);
