using System.Security.Claims;
using Gpud.Api.Auth;
using Gpud.Services.Inference;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Gpud.Api.Models;

/// <summary>OpenAI's Models API: <c>/v1/models</c>, listing base models, fine-tuned models, checkpoints and adapters.</summary>
internal static class ModelsEndpoints
{
    public static RouteGroupBuilder MapModels(this RouteGroupBuilder v1)
    {
        var models = v1.MapGroup("/models").WithTags("Models");
        models.MapGet("/", List).WithName("listModels").WithSummary("List the models the caller can use: base, fine-tuned, checkpoints, adapters.");
        models.MapGet("/{*model}", Retrieve).WithName("retrieveModel").WithSummary("Retrieve a model (names may contain '/' and ':').");
        models.MapDelete("/{*model}", Delete).WithName("deleteModel").WithSummary("Delete a fine-tuned model or an uploaded adapter.");
        return v1;
    }

    private static Ok<ModelList> List(ClaimsPrincipal user, ModelsService models) =>
        TypedResults.Ok(new ModelList("list", models.List(user.Project()).Select(ModelObject.From).ToList()));

    private static Ok<ModelObject> Retrieve(ClaimsPrincipal user, ModelsService models, string model) =>
        TypedResults.Ok(ModelObject.From(models.Get(user.Project(), model)));

    private static Ok<DeletedModel> Delete(ClaimsPrincipal user, ModelsService models, string model) =>
        TypedResults.Ok(new DeletedModel(models.Delete(user.Project(), model).Id, "model", true));
}

/// <summary>OpenAI's Model object, plus vLLM's <c>parent</c> (the base an adapter applies to; null for a base) and
/// gpud's <c>kind</c> (base, fine_tuned, checkpoint, adapter).</summary>
public sealed record ModelObject(string Id, string Object, long Created, string OwnedBy, string? Parent, string Kind)
{
    public static ModelObject From(ServedModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        var kind = model.Kind switch
        {
            ServedModelKind.FineTuned => "fine_tuned",
            ServedModelKind.Checkpoint => "checkpoint",
            ServedModelKind.Imported => "adapter",
            _ => "base",
        };
        return new ModelObject(model.Id, "model", model.Created, model.OwnedBy, model.Kind == ServedModelKind.Base ? null : model.Base.Name, kind);
    }
}

public sealed record ModelList(string Object, IReadOnlyList<ModelObject> Data);

public sealed record DeletedModel(string Id, string Object, bool Deleted);
