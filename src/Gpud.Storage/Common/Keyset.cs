using Microsoft.Data.Sqlite;

namespace Gpud.Storage.Common;

/// <summary>
/// Keyset pagination over tables keyed by an <c>seq</c> autoincrement: an <c>after</c> cursor names a row by id, and a
/// page asks for one row more than it returns to learn <c>has_more</c> without counting.
/// </summary>
internal static class Keyset
{
    /// <summary>The <c>seq</c> of row <paramref name="id"/> where <paramref name="scopeColumn"/> = <paramref name="scope"/>, or null.</summary>
    public static long? CursorOf(SqliteConnection connection, string table, string id, string scopeColumn, string scope)
    {
        using var find = connection.CreateCommand();
        find.CommandText = $"SELECT seq FROM {table} WHERE id = $id AND {scopeColumn} = $scope";
        find.Parameters.AddWithValue("$id", id);
        find.Parameters.AddWithValue("$scope", scope);
        return find.ExecuteScalar() as long?;
    }

    /// <summary>Runs <paramref name="command"/> (which ends in <c>LIMIT $take</c>) for one page of <paramref name="limit"/> rows.</summary>
    public static Page<T> ReadPage<T>(SqliteCommand command, int limit, Func<SqliteDataReader, T> read)
    {
        command.Parameters.AddWithValue("$take", limit + 1);
        var items = new List<T>(Math.Min(limit + 1, 1024));
        using (var reader = command.ExecuteReader())
        {
            while (reader.Read()) items.Add(read(reader));
        }
        var hasMore = items.Count > limit;
        if (hasMore) items.RemoveAt(items.Count - 1);
        return new Page<T>(items, hasMore);
    }
}
