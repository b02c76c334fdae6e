using Microsoft.Data.Sqlite;

namespace Gpud.Storage.Common;

/// <summary>The <c>metadata[key]=value</c> filters of a list endpoint, over a <c>metadata</c> JSON column.</summary>
internal static class MetadataFilter
{
    /// <summary>One <c>AND</c> condition per pair, its key and value bound as parameters of <paramref name="command"/>.</summary>
    public static string Where(SqliteCommand command, IReadOnlyDictionary<string, string>? metadata)
    {
        var where = "";
        var i = 0;
        foreach (var (key, value) in metadata ?? new Dictionary<string, string>())
        {
            // json_extract paths need quoting for keys with dots or spaces; the key itself is a bound parameter.
            where += $" AND json_extract(metadata, '$.\"' || $k{i} || '\"') = $v{i}";
            command.Parameters.AddWithValue($"$k{i}", key.Replace("\"", "\\\"", StringComparison.Ordinal));
            command.Parameters.AddWithValue($"$v{i}", value);
            i++;
        }
        return where;
    }
}
