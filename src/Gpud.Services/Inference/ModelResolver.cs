using System.Text.RegularExpressions;
using Gpud.Services.Errors;
using Gpud.Services.FineTuning;
using Gpud.Services.Models;
using Gpud.Storage.Adapters;
using Gpud.Storage.FineTuning;

namespace Gpud.Services.Inference;

/// <summary>An adapter registered in configuration (<c>Gpud:Adapters:&lt;name&gt;</c>): served to every project.</summary>
public sealed record ConfiguredAdapter(string Name, string Path, string BaseModel);

/// <summary>
/// Turns a <c>model</c> name into what serves it: a base model from the catalog; <c>ft:…:{job}</c> (a succeeded job's
/// adapter, unless deleted); <c>ft:…:{job}:ckpt-step-N</c> (a live checkpoint, also while its job still runs); an
/// adapter from configuration; or one uploaded to the caller's project. Anything else, and anything of another
/// project, is 404 <c>model_not_found</c>.
/// </summary>
public sealed partial class ModelResolver(
    ModelCatalog catalog,
    JobRepository jobs,
    AdapterRepository adapters,
    FineTuningSettings fineTuning,
    IReadOnlyList<ConfiguredAdapter> configured)
{
    public const string SystemOwner = "gpud";

    private readonly Dictionary<string, ConfiguredAdapter> _configured = configured.ToDictionary(a => a.Name, StringComparer.Ordinal);

    /// <summary>Where uploaded adapters live: one directory per adapter id.</summary>
    public string ImportedDirectory(string adapterId) => Path.Combine(fineTuning.DataDir, "adapters", "imported", adapterId);

    public ServedModel Resolve(string project, string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return TryResolve(project, name) ?? throw ModelCatalog.NotFound(name);
    }

    public ServedModel? TryResolve(string project, string name)
    {
        if (catalog.TryGet(name, out var model)) return new ServedModel(name, ServedModelKind.Base, model, SystemOwner, model.CreatedAt);
        if (name.StartsWith("ft:", StringComparison.Ordinal)) return FineTuned(project, name);
        if (_configured.TryGetValue(name, out var adapter))
        {
            return catalog.TryGet(adapter.BaseModel, out var configuredBase)
                ? new ServedModel(name, ServedModelKind.Imported, configuredBase, SystemOwner, configuredBase.CreatedAt, adapter.Path)
                : null;
        }
        if (adapters.FindByName(name) is { } uploaded && uploaded.Project == project && catalog.TryGet(uploaded.BaseModel, out var uploadedBase))
            return new ServedModel(name, ServedModelKind.Imported, uploadedBase, FineTuningJobView.Organization(project), uploaded.CreatedAt, ImportedDirectory(uploaded.Id));
        return null;
    }

    /// <summary>Every model the project can call: bases, fine-tuned models, live checkpoints, configured and uploaded adapters.</summary>
    public IReadOnlyList<ServedModel> List(string project)
    {
        var owner = FineTuningJobView.Organization(project);
        var list = catalog.List().Select(m => new ServedModel(m.Name, ServedModelKind.Base, m, SystemOwner, m.CreatedAt)).ToList();
        foreach (var job in jobs.FineTunedModels(project))
        {
            if (catalog.TryGet(job.Model, out var b))
                list.Add(new ServedModel(job.FineTunedModel!, ServedModelKind.FineTuned, b, owner, job.FinishedAt ?? job.CreatedAt, fineTuning.AdapterDirectory(job.Id), job.Id));
        }
        foreach (var (checkpoint, baseName) in jobs.LiveCheckpoints(project))
        {
            if (catalog.TryGet(baseName, out var b))
                list.Add(new ServedModel(checkpoint.FineTunedModelCheckpoint, ServedModelKind.Checkpoint, b, owner, checkpoint.CreatedAt,
                    fineTuning.CheckpointDirectory(checkpoint.JobId, checkpoint.StepNumber), checkpoint.JobId));
        }
        foreach (var adapter in _configured.Values)
        {
            if (catalog.TryGet(adapter.BaseModel, out var b)) list.Add(new ServedModel(adapter.Name, ServedModelKind.Imported, b, SystemOwner, b.CreatedAt, adapter.Path));
        }
        foreach (var adapter in adapters.List(project))
        {
            if (catalog.TryGet(adapter.BaseModel, out var b))
                list.Add(new ServedModel(adapter.Name, ServedModelKind.Imported, b, owner, adapter.CreatedAt, ImportedDirectory(adapter.Id)));
        }
        return list;
    }

    /// <summary>True for names an upload may not take: base models (configured, even if broken) and configured adapters.</summary>
    public bool IsReserved(string name) => catalog.Definitions.Any(d => d.Name == name) || _configured.ContainsKey(name);

    /// <summary>The job id a fine-tuned or checkpoint name ends with (<c>ft:base:org:suffix:ftjob-…[:ckpt-step-N]</c>).</summary>
    public static (string FineTunedName, string JobId, int? Step)? ParseFineTuned(string name)
    {
        var match = FineTunedName().Match(name);
        if (!match.Success) return null;
        return (match.Groups["model"].Value, match.Groups["job"].Value, match.Groups["step"].Success ? int.Parse(match.Groups["step"].Value, System.Globalization.CultureInfo.InvariantCulture) : null);
    }

    private ServedModel? FineTuned(string project, string name)
    {
        if (ParseFineTuned(name) is not var (fineTunedName, jobId, step)) return null;
        if (jobs.Find(project, jobId) is not { } job || JobRunner.FineTunedModelName(job) != fineTunedName) return null;
        if (!catalog.TryGet(job.Model, out var model)) return null;
        var owner = FineTuningJobView.Organization(project);
        if (step is { } n)
        {
            return jobs.LiveCheckpointSteps(jobId).Contains(n)
                ? new ServedModel(name, ServedModelKind.Checkpoint, model, owner, job.CreatedAt, fineTuning.CheckpointDirectory(jobId, n), jobId)
                : null;
        }
        return job.Status == JobStatus.Succeeded && job.ModelDeletedAt is null
            ? new ServedModel(name, ServedModelKind.FineTuned, model, owner, job.FinishedAt ?? job.CreatedAt, fineTuning.AdapterDirectory(jobId), jobId)
            : null;
    }

    [GeneratedRegex(@"^(?<model>ft:.+:(?<job>ftjob-[0-9A-Za-z]+))(:ckpt-step-(?<step>[0-9]{1,9}))?$", RegexOptions.CultureInvariant)]
    private static partial Regex FineTunedName();
}
