using Gpud.Services.Errors;
using Gpud.Services.FineTuning;
using Gpud.Storage.Adapters;
using Gpud.Storage.FineTuning;

namespace Gpud.Services.Inference;

/// <summary>The Models API over <see cref="ModelResolver"/>: list, retrieve, delete (fine-tuned models and uploaded adapters).</summary>
public sealed class ModelsService(ModelResolver resolver, JobRepository jobs, AdapterRepository adapters, InferenceService inference, TimeProvider time)
{
    public IReadOnlyList<ServedModel> List(string project) => resolver.List(project);

    public ServedModel Get(string project, string name) => resolver.Resolve(project, name);

    /// <summary>
    /// Deletes a fine-tuned model (the job's final adapter) or an uploaded adapter: the database row first, then the
    /// files, then every cache tier. A name whose job is still running (its adapter being written) is a 400.
    /// </summary>
    public ServedModel Delete(string project, string name)
    {
        if (ModelResolver.ParseFineTuned(name) is var (_, jobId, step) && jobs.Find(project, jobId) is { } job
            && !JobStatus.IsFinished(job.Status) && step is null)
        {
            throw GpudException.Invalid($"The model '{name}' cannot be deleted while its fine-tuning job {jobId} is {job.Status}; cancel the job first.", "model", "model_in_use");
        }
        var model = resolver.Resolve(project, name);
        var now = time.GetUtcNow().ToUnixTimeSeconds();
        switch (model.Kind)
        {
            case ServedModelKind.FineTuned when jobs.DeleteModel(model.JobId!, now):
                break;
            case ServedModelKind.Imported when adapters.FindByName(name) is { } row && row.Project == project && adapters.Delete(row.Id, now):
                break;
            case ServedModelKind.Base:
                throw GpudException.Invalid($"'{name}' is a base model; only fine-tuned models and uploaded adapters can be deleted.", "model", "model_not_deletable");
            case ServedModelKind.Checkpoint:
                throw GpudException.Invalid($"'{name}' is a checkpoint; delete its fine-tuned model or rely on the job's checkpoint retention.", "model", "model_not_deletable");
            case ServedModelKind.Imported when adapters.FindByName(name) is null:
                throw GpudException.Invalid($"'{name}' is registered in configuration (Gpud:Adapters); remove it there.", "model", "model_not_deletable");
            default:
                throw ModelsNotFound(name); // deleted concurrently
        }
        inference.Forget(model.AdapterDirectory!);
        try
        {
            Directory.Delete(model.AdapterDirectory!, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
        return model;
    }

    private static GpudException ModelsNotFound(string name) => Models.ModelCatalog.NotFound(name);
}
