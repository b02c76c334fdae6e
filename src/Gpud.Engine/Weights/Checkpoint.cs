using System.Text.Json;
using Gpud.Engine.Models;
using TorchSharp;

namespace Gpud.Engine.Weights;

/// <summary>
/// The weights of a Hugging Face model directory: <c>model.safetensors</c>, or the shards listed by
/// <c>model.safetensors.index.json</c>. A missing shard or a tensor the index names but no shard holds is reported
/// by name when the checkpoint is opened, not halfway through loading.
/// </summary>
public sealed class Checkpoint : IWeightSource
{
    private readonly List<SafetensorsFile> _files = [];
    private readonly Dictionary<string, SafetensorsFile> _byName = new(StringComparer.Ordinal);

    private Checkpoint()
    {
    }

    public static Checkpoint Open(string directory)
    {
        var checkpoint = new Checkpoint();
        try
        {
            var index = Path.Combine(directory, "model.safetensors.index.json");
            var single = Path.Combine(directory, "model.safetensors");
            if (System.IO.File.Exists(index))
                checkpoint.OpenSharded(directory, index);
            else if (System.IO.File.Exists(single))
                checkpoint.Add(new SafetensorsFile(single), null);
            else
                throw new ModelLoadException($"{directory}: no model.safetensors or model.safetensors.index.json (only safetensors checkpoints are supported).");
            return checkpoint;
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    public IReadOnlyCollection<string> Names => _byName.Keys;

    public bool Contains(string name) => _byName.ContainsKey(name);

    public long[] ShapeOf(string name) => FileOf(name).ShapeOf(name);

    public torch.Tensor Read(string name, torch.ScalarType dtype) => FileOf(name).Read(name, dtype);

    public void Dispose()
    {
        foreach (var file in _files) file.Dispose();
        _files.Clear();
    }

    private SafetensorsFile FileOf(string name) =>
        _byName.TryGetValue(name, out var file) ? file : throw new ModelLoadException($"The checkpoint has no tensor named '{name}'.");

    private void OpenSharded(string directory, string indexPath)
    {
        Dictionary<string, string> weightMap;
        try
        {
            using var document = JsonDocument.Parse(System.IO.File.ReadAllBytes(indexPath));
            if (!document.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new ModelLoadException($"{indexPath}: no 'weight_map' object.");
            weightMap = map.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "");
        }
        catch (JsonException e)
        {
            throw new ModelLoadException($"{indexPath} is not valid JSON: {e.Message}", e);
        }

        foreach (var shard in weightMap.Values.Distinct(StringComparer.Ordinal))
        {
            if (shard.Length == 0 || shard != Path.GetFileName(shard))
                throw new ModelLoadException($"{indexPath}: invalid shard name '{shard}'.");
            var path = Path.Combine(directory, shard);
            if (!System.IO.File.Exists(path)) throw new ModelLoadException($"{indexPath}: shard {shard} is missing.");
            Add(new SafetensorsFile(path), weightMap.Where(p => p.Value == shard).Select(p => p.Key).ToHashSet(StringComparer.Ordinal));
        }
    }

    private void Add(SafetensorsFile file, IReadOnlySet<string>? expected)
    {
        _files.Add(file);
        if (expected is not null)
        {
            var absent = expected.FirstOrDefault(name => !file.Contains(name));
            if (absent is not null) throw new ModelLoadException($"{file.Path}: the index lists '{absent}' in this shard but it is not there.");
        }
        foreach (var name in file.Names) _byName[name] = file;
    }
}
