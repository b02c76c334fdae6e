using Microsoft.Data.Sqlite;

namespace Gpud.Storage.Common;

/// <summary>Lists of values in SQL (<c>status IN (…)</c>), each value a bound parameter.</summary>
internal static class SqlList
{
    /// <summary>Binds the values as <c>$prefix0</c>, <c>$prefix1</c>, …; returns <c>($prefix0, $prefix1, …)</c>.</summary>
    public static string Bind(SqliteCommand command, string prefix, IEnumerable<string> values)
    {
        var names = new List<string>();
        foreach (var value in values)
        {
            var name = $"${prefix}{names.Count}";
            command.Parameters.AddWithValue(name, value);
            names.Add(name);
        }
        return $"({string.Join(", ", names)})";
    }
}
