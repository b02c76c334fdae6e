using System.Text.Json;

namespace Gpud.Tests.Infrastructure;

/// <summary>
/// Reference logits (tests/fixtures/logits, float64 transformers code via scripts/fixtures/make_model_fixtures.py):
/// input ids, how many last positions are kept, and their logits [batch][position][vocab].
/// </summary>
public sealed record LogitsFixture(long[,] InputIds, int Last, float[][][] Logits)
{
    public static LogitsFixture Load(string path)
    {
        using var json = JsonDocument.Parse(File.ReadAllBytes(path));
        var root = json.RootElement;
        var rows = root.GetProperty("input_ids").EnumerateArray().Select(r => r.EnumerateArray().Select(v => v.GetInt64()).ToArray()).ToArray();
        var ids = new long[rows.Length, rows[0].Length];
        for (var i = 0; i < rows.Length; i++)
        for (var j = 0; j < rows[i].Length; j++)
            ids[i, j] = rows[i][j];
        var logits = root.GetProperty("logits").EnumerateArray()
            .Select(s => s.EnumerateArray().Select(p => p.EnumerateArray().Select(v => v.GetSingle()).ToArray()).ToArray()).ToArray();
        return new LogitsFixture(ids, root.GetProperty("last_positions").GetInt32(), logits);
    }
}
