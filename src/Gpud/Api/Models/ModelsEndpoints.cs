using Gpud.Services.Models;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Gpud.Api.Models;

/// <summary>OpenAI's Models API: <c>/v1/models</c>.</summary>
internal static class ModelsEndpoints
{
    public static RouteGroupBuilder MapModels(this RouteGroupBuilder v1)
    {
        var models = v1.MapGroup("/models").WithTags("Models");
        models.MapGet("/", List).WithName("listModels").WithSummary("List the models this node serves.");
        models.MapGet("/{*model}", Retrieve).WithName("retrieveModel").WithSummary("Retrieve a model (names may contain '/').");
        return v1;
    }

    private static Ok<ModelList> List(ModelCatalog catalog) =>
        TypedResults.Ok(new ModelList("list", catalog.List().Select(ModelObject.From).ToList()));

    private static Ok<ModelObject> Retrieve(ModelCatalog catalog, string model) =>
        TypedResults.Ok(ModelObject.From(catalog.Get(model)));
}

/// <summary>OpenAI's Model object.</summary>
public sealed record ModelObject(string Id, string Object, long Created, string OwnedBy)
{
    public static ModelObject From(BaseModel model)
    {
        ArgumentNullException.ThrowIfNull(model);
        return new ModelObject(model.Name, "model", model.CreatedAt, "gpud");
    }
}

public sealed record ModelList(string Object, IReadOnlyList<ModelObject> Data);
