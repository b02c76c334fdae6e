using System.Text;
using System.Text.Json;

namespace Gpud.Engine.Weights;

/// <summary>One tensor to write: its safetensors dtype (F32, BF16, ...), shape and raw little-endian bytes.</summary>
public sealed record TensorData(string Name, string DType, long[] Shape, byte[] Data);

/// <summary>
/// Writes a <c>.safetensors</c> file the way the Python library does (names sorted, header padded to 8 bytes,
/// <c>__metadata__</c> first) so Hugging Face tools read it. The file appears atomically: written to a temporary name,
/// flushed to disk, then renamed.
/// </summary>
public static class SafetensorsWriter
{
    public static void Write(string path, IEnumerable<TensorData> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        var ordered = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        using var header = new MemoryStream();
        using (var json = new Utf8JsonWriter(header))
        {
            json.WriteStartObject();
            json.WriteStartObject("__metadata__");
            foreach (var (key, value) in metadata ?? new Dictionary<string, string> { ["format"] = "pt" })
                json.WriteString(key, value);
            json.WriteEndObject();
            long offset = 0;
            foreach (var tensor in ordered)
            {
                json.WriteStartObject(tensor.Name);
                json.WriteString("dtype", tensor.DType);
                json.WriteStartArray("shape");
                foreach (var dim in tensor.Shape) json.WriteNumberValue(dim);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + tensor.Data.Length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += tensor.Data.Length;
            }
            json.WriteEndObject();
        }
        var padding = (int)((8 - header.Length % 8) % 8);

        var temp = path + ".tmp";
        using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            file.Write(BitConverter.GetBytes(header.Length + padding));
            header.Position = 0;
            header.CopyTo(file);
            file.Write(Encoding.ASCII.GetBytes(new string(' ', padding)));
            foreach (var tensor in ordered) file.Write(tensor.Data);
            file.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
    }
}
