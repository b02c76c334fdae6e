using System.Text.Json;

namespace Gpud.Services.Batches;

/// <summary>One answered request, as the output (status 200) or error file will hold it.</summary>
public sealed record BatchResult(int Index, bool Succeeded, int InputTokens, int OutputTokens, string Line);

/// <summary>
/// The answers of a running batch, appended one JSON line each as requests finish: after a restart (<c>kill -9</c>
/// included) the batch goes on with the requests the journal lacks, so none runs twice and none is lost. A line cut off
/// by a crash is dropped on open. The finished batch's output and error files are built from it, in input order.
/// </summary>
public sealed class BatchJournal : IDisposable
{
    private readonly Lock _gate = new();
    private readonly FileStream _stream;
    private readonly Dictionary<int, BatchResult> _results = [];

    private BatchJournal(FileStream stream, Dictionary<int, BatchResult> results)
    {
        _stream = stream;
        _results = results;
    }

    /// <summary>Opens (or starts) the journal at <paramref name="path"/>, keeping every whole line.</summary>
    public static BatchJournal Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        try
        {
            var (results, whole) = ReadWhole(stream);
            stream.SetLength(whole); // a torn last line goes; its request runs again
            stream.Seek(0, SeekOrigin.End);
            return new BatchJournal(stream, results);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>The results in input order.</summary>
    public IReadOnlyList<BatchResult> Results
    {
        get
        {
            lock (_gate) return _results.Values.OrderBy(r => r.Index).ToList();
        }
    }

    public bool Has(int index)
    {
        lock (_gate) return _results.ContainsKey(index);
    }

    /// <summary>Counts and token totals so far.</summary>
    public (int Completed, int Failed, long InputTokens, long OutputTokens) Totals()
    {
        lock (_gate)
        {
            var completed = _results.Values.Count(r => r.Succeeded);
            return (completed, _results.Count - completed, _results.Values.Sum(r => (long)r.InputTokens), _results.Values.Sum(r => (long)r.OutputTokens));
        }
    }

    /// <summary>Appends a result; it reaches the operating system before this returns (a crashed process loses none).</summary>
    public void Append(BatchResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        using var entry = new MemoryStream();
        using (var writer = new Utf8JsonWriter(entry))
        {
            writer.WriteStartObject();
            writer.WriteNumber("index", result.Index);
            writer.WriteBoolean("succeeded", result.Succeeded);
            writer.WriteNumber("input_tokens", result.InputTokens);
            writer.WriteNumber("output_tokens", result.OutputTokens);
            writer.WriteString("line", result.Line);
            writer.WriteEndObject();
        }
        entry.WriteByte((byte)'\n');
        var bytes = entry.ToArray();
        lock (_gate)
        {
            if (!_results.TryAdd(result.Index, result)) return;
            _stream.Write(bytes);
            _stream.Flush();
        }
    }

    /// <summary>Forces the journal to disk (power loss, not only a crash); called with each progress report.</summary>
    public void Sync()
    {
        lock (_gate) _stream.Flush(flushToDisk: true);
    }

    public void Dispose() => _stream.Dispose();

    private static (Dictionary<int, BatchResult> Results, long Whole) ReadWhole(FileStream stream)
    {
        var results = new Dictionary<int, BatchResult>();
        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        long whole = 0;
        var start = 0;
        for (var i = 0; i < bytes.Length; i++)
        {
            if (bytes[i] != (byte)'\n') continue;
            try
            {
                using var document = JsonDocument.Parse(bytes.AsMemory(start, i - start));
                var e = document.RootElement;
                var result = new BatchResult(e.GetProperty("index").GetInt32(), e.GetProperty("succeeded").GetBoolean(),
                    e.GetProperty("input_tokens").GetInt32(), e.GetProperty("output_tokens").GetInt32(), e.GetProperty("line").GetString()!);
                results.TryAdd(result.Index, result);
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
            {
                break; // written by nothing but a crash mid-line: stop here
            }
            whole = i + 1;
            start = i + 1;
        }
        return (results, whole);
    }
}
