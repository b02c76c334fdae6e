using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using Gpud.Engine.Models;
using TorchSharp;

namespace Gpud.Engine.Weights;

/// <summary>
/// One <c>.safetensors</c> file: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
/// shape and byte range, then the raw data. Each tensor is read with positional reads straight into its own tensor's
/// memory: no second copy of the file exists at any point (a memory map would count the whole file again in the
/// process's resident set). Every header field is checked before use: a malformed or truncated file is a
/// <see cref="ModelLoadException"/>, never a crash or an out-of-range read.
/// </summary>
public sealed class SafetensorsFile : IWeightSource
{
    private const long MaxHeaderBytes = 100L * 1024 * 1024;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly long _dataStart;

    private sealed record Entry(torch.ScalarType DType, long[] Shape, long Begin, long End);

    public SafetensorsFile(string path)
    {
        Path = path;
        long length;
        try
        {
            length = new FileInfo(path).Length;
        }
        catch (IOException e)
        {
            throw new ModelLoadException($"{path}: cannot be read ({e.Message}).", e);
        }
        if (length < 8) throw new ModelLoadException($"{path}: too short to be a safetensors file ({length} bytes).");

        using (var stream = File.OpenRead(path))
        {
            Span<byte> prefix = stackalloc byte[8];
            stream.ReadExactly(prefix);
            var headerLength = BitConverter.ToInt64(prefix);
            if (headerLength <= 0 || headerLength > MaxHeaderBytes || headerLength > length - 8)
                throw new ModelLoadException($"{path}: invalid safetensors header length {headerLength} for a {length}-byte file.");
            var header = new byte[headerLength];
            stream.ReadExactly(header);
            _dataStart = 8 + headerLength;
            ParseHeader(header, length - _dataStart);
        }

        _handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
    }

    public string Path { get; }

    /// <summary>The <c>__metadata__</c> string map, if any (e.g. <c>format: pt</c>).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; private set; } = new Dictionary<string, string>();

    public IReadOnlyCollection<string> Names => _entries.Keys;

    public bool Contains(string name) => _entries.ContainsKey(name);

    public long[] ShapeOf(string name) => Get(name).Shape.ToArray();

    public torch.ScalarType StoredTypeOf(string name) => Get(name).DType;

    public unsafe torch.Tensor Read(string name, torch.ScalarType dtype)
    {
        var entry = Get(name);
        var tensor = torch.empty(entry.Shape, entry.DType);
        try
        {
            var byteCount = entry.End - entry.Begin;
            if (byteCount > 0)
            {
                fixed (byte* destination = tensor.bytes)
                {
                    // Span lengths are int: read in chunks so tensors over 2 GB (large embeddings) work too.
                    long done = 0;
                    while (done < byteCount)
                    {
                        var chunk = (int)Math.Min(1 << 30, byteCount - done);
                        var read = RandomAccess.Read(_handle, new Span<byte>(destination + done, chunk), _dataStart + entry.Begin + done);
                        if (read <= 0) throw new ModelLoadException($"{Path}: tensor '{name}' ends beyond the end of the file.");
                        done += read;
                    }
                }
            }
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
        if (entry.DType == dtype) return tensor;
        using (tensor)
        {
            return tensor.to_type(dtype);
        }
    }

    public void Dispose() => _handle.Dispose();

    private Entry Get(string name) =>
        _entries.TryGetValue(name, out var entry) ? entry : throw new ModelLoadException($"{Path}: no tensor named '{name}'.");

    private void ParseHeader(byte[] header, long dataLength)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(header);
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{Path}: the safetensors header is not valid JSON ({e.Message}).", e);
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"{Path}: the safetensors header must be a JSON object.");
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    if (property.Value.ValueKind == JsonValueKind.Object)
                        Metadata = property.Value.EnumerateObject()
                            .Where(p => p.Value.ValueKind == JsonValueKind.String)
                            .ToDictionary(p => p.Name, p => p.Value.GetString()!);
                    continue;
                }
                _entries[property.Name] = ParseEntry(property.Name, property.Value, dataLength);
            }
        }
    }

    private Entry ParseEntry(string name, JsonElement value, long dataLength)
    {
        string Where() => $"{Path}: tensor '{name}'";
        if (value.ValueKind != JsonValueKind.Object
            || !value.TryGetProperty("dtype", out var dtypeValue) || dtypeValue.ValueKind != JsonValueKind.String
            || !value.TryGetProperty("shape", out var shapeValue) || shapeValue.ValueKind != JsonValueKind.Array
            || !value.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2)
            throw new ModelLoadException($"{Where()} needs 'dtype', 'shape' and two 'data_offsets'.");

        var (dtype, elementSize) = dtypeValue.GetString() switch
        {
            "F32" => (torch.ScalarType.Float32, 4),
            "F16" => (torch.ScalarType.Float16, 2),
            "BF16" => (torch.ScalarType.BFloat16, 2),
            "F64" => (torch.ScalarType.Float64, 8),
            "I64" => (torch.ScalarType.Int64, 8),
            "I32" => (torch.ScalarType.Int32, 4),
            "I8" => (torch.ScalarType.Int8, 1),
            "U8" => (torch.ScalarType.Byte, 1),
            "BOOL" => (torch.ScalarType.Bool, 1),
            var other => throw new ModelLoadException($"{Where()} has unsupported dtype '{other}'."),
        };

        var shape = new long[shapeValue.GetArrayLength()];
        long elements = 1;
        var i = 0;
        foreach (var dim in shapeValue.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out var d) || d < 0)
                throw new ModelLoadException($"{Where()} has an invalid shape.");
            shape[i++] = d;
            elements = checked(elements * d);
        }

        if (!offsets[0].TryGetInt64(out var begin) || !offsets[1].TryGetInt64(out var end) || begin < 0 || end < begin || end > dataLength)
            throw new ModelLoadException($"{Where()} has data_offsets outside the file's {dataLength} data bytes (truncated file?).");
        if (end - begin != checked(elements * elementSize))
            throw new ModelLoadException($"{Where()}: data_offsets cover {end - begin} bytes but shape [{string.Join(", ", shape)}] of {dtypeValue.GetString()} needs {elements * elementSize}.");
        return new Entry(dtype, shape, begin, end);
    }
}
