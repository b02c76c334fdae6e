using System.Text.Json;
using Gpud.Engine.Lora;
using Gpud.Engine.Models;
using Gpud.Services.Errors;
using Gpud.Services.FineTuning;
using Gpud.Services.Ids;
using Gpud.Services.Models;
using Gpud.Storage.Adapters;

namespace Gpud.Services.Inference;

/// <summary>
/// Imports PEFT adapters trained elsewhere (<c>POST /v1/adapters</c>, a gpud extension): the files land in a staging
/// directory, are checked against the base model's config (rank, target modules, every tensor's shape) and the
/// serving limits, are renamed into place and fsynced, and only then does the row make the name callable.
/// </summary>
public sealed class AdaptersService(ModelResolver resolver, ModelCatalog catalog, AdapterRepository adapters, InferenceSettings inference, TimeProvider time)
{
    public async Task<AdapterRecord> ImportAsync(string project, string? name, string? baseModel, Func<string, Task> writeFiles)
    {
        ArgumentNullException.ThrowIfNull(writeFiles);
        if (string.IsNullOrEmpty(name) || !ServedModel.IsValidAdapterName(name))
            throw GpudException.Invalid($"'name' is required: {ServedModel.AdapterNameRule}.", "name");
        if (resolver.IsReserved(name)) throw GpudException.Invalid($"'{name}' is a base model or an adapter from configuration.", "name", "adapter_name_taken");
        if (string.IsNullOrEmpty(baseModel)) throw GpudException.Invalid("'base_model' is required: the model the adapter was trained on.", "base_model");
        var model = catalog.Get(baseModel);

        var id = ResourceId.New("adapter-");
        var directory = resolver.ImportedDirectory(id);
        var staging = directory + ".tmp";
        Directory.CreateDirectory(staging);
        try
        {
            await writeFiles(staging);
            LoraWeights weights;
            try
            {
                weights = PeftAdapter.Read(staging, model.Config);
            }
            catch (ModelLoadException e)
            {
                throw GpudException.Invalid($"The adapter does not fit '{baseModel}': {e.Message}", "file", "invalid_adapter");
            }
            AdapterRecord record;
            using (weights)
            {
                if (weights.Settings.Rank > inference.MaxLoraRank)
                    throw GpudException.Invalid($"The adapter's rank {weights.Settings.Rank} exceeds Gpud:Inference:MaxLoraRank ({inference.MaxLoraRank}).", "file", "invalid_adapter");
                var bytes = Directory.EnumerateFiles(staging).Sum(f => new FileInfo(f).Length);
                record = new AdapterRecord(id, project, name, model.Name, weights.Settings.Rank, JsonSerializer.Serialize(weights.TargetModules), bytes, time.GetUtcNow().ToUnixTimeSeconds());
            }
            Engine.IO.AtomicDirectory.Write(directory, temp =>
            {
                foreach (var file in Directory.EnumerateFiles(staging)) File.Move(file, Path.Combine(temp, Path.GetFileName(file)));
            });
            if (!adapters.TryInsert(record))
            {
                Directory.Delete(directory, recursive: true);
                throw GpudException.Invalid($"An adapter named '{name}' already exists.", "name", "adapter_name_taken");
            }
            return record;
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

}
