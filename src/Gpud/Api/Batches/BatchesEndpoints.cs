using System.Security.Claims;
using System.Text.Json;
using Gpud.Api.Auth;
using Gpud.Api.Errors;
using Gpud.Api.Lists;
using Gpud.Services.Batches;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Gpud.Api.Batches;

/// <summary>OpenAI's Batch API: <c>/v1/batches</c>.</summary>
internal static class BatchesEndpoints
{
    public static RouteGroupBuilder MapBatches(this RouteGroupBuilder v1)
    {
        var batches = v1.MapGroup("/batches").WithTags("Batch");
        batches.MapPost("/", Create)
            .Accepts<CreateBatchRequest>("application/json")
            .WithName("createBatch")
            .WithSummary("Create a batch from an uploaded file of requests: they run in the background, behind interactive requests.");
        batches.MapGet("/", List).WithName("listBatches").WithSummary("List batches, newest first.");
        batches.MapGet("/{batch_id}", Retrieve).WithName("retrieveBatch").WithSummary("Retrieve a batch.");
        batches.MapPost("/{batch_id}/cancel", Cancel).WithName("cancelBatch")
            .WithSummary("Cancel a batch: its requests in flight stop, and it ends cancelled with the answers it has.");
        return v1;
    }

    private static Ok<BatchObject> Create(JsonElement body, ClaimsPrincipal user, BatchesService batches) =>
        TypedResults.Ok(BatchObject.From(batches.Create(user.Project(), body)));

    private static Results<Ok<BatchList>, JsonHttpResult<ErrorResponse>> List(ClaimsPrincipal user, BatchesService batches, string? after, string? limit)
    {
        if (!ListQuery.TryParseLimit(limit, out var take, out var error)) return error;
        var page = batches.List(user.Project(), take, string.IsNullOrEmpty(after) ? null : after);
        var data = page.Items.Select(BatchObject.From).ToList();
        return TypedResults.Ok(new BatchList("list", data, data.FirstOrDefault()?.Id, data.LastOrDefault()?.Id, page.HasMore));
    }

    private static Ok<BatchObject> Retrieve(ClaimsPrincipal user, BatchesService batches, string batch_id) =>
        TypedResults.Ok(BatchObject.From(batches.Get(user.Project(), batch_id)));

    private static Ok<BatchObject> Cancel(ClaimsPrincipal user, BatchesService batches, string batch_id) =>
        TypedResults.Ok(BatchObject.From(batches.Cancel(user.Project(), batch_id)));
}
