using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.OpenApi;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace Gpud.Api.OpenApi;

/// <summary>
/// Documents a JSON request body with the type its endpoint declares through <c>Accepts&lt;T&gt;</c>. The endpoints
/// bind the body as a <c>JsonElement</c> (to answer each bad field with its own 400), which alone would document an
/// empty schema and leave generated clients without request types.
/// </summary>
internal sealed class DeclaredRequestBodyFilter : IOperationFilter
{
    public void Apply(OpenApiOperation operation, OperationFilterContext context)
    {
        var accepts = context.ApiDescription.ActionDescriptor.EndpointMetadata.OfType<IAcceptsMetadata>().LastOrDefault();
        if (accepts?.RequestType is not { } type || operation.RequestBody?.Content is not { } content) return;
        foreach (var contentType in accepts.ContentTypes)
        {
            if (contentType == "application/json" && content.ContainsKey(contentType))
                content[contentType] = new OpenApiMediaType { Schema = context.SchemaGenerator.GenerateSchema(type, context.SchemaRepository) };
        }
    }
}
