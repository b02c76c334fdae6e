using System.Text.Json;
using Gpud.Api.Batches;
using Gpud.Services.Batches;
using Gpud.Services.Inference;
using Gpud.Services.Responses;

namespace Gpud.Api.Responses;

/// <summary><c>/v1/responses</c> for the Batch API: the route's own parsing, answer and storage.</summary>
internal sealed class ResponsesBatchEndpoint(ModelResolver models, InferenceService inference, ResponseStore store, JsonSerializerOptions json,
    TimeProvider time) : IBatchEndpoint
{
    public string Url => "/v1/responses";

    public Task<BatchAnswer> AnswerAsync(string project, JsonElement body, CancellationToken cancellationToken) => BatchAnswers.Answer(json, async () =>
    {
        var call = ResponsesEndpoints.Start(body, project, models, inference, store, time, json, batchPriority: true, cancellationToken);
        var response = await ResponsesEndpoints.Whole(call, cancellationToken);
        return new BatchAnswer(200, JsonSerializer.Serialize(response, json), response.Usage?.InputTokens ?? 0, response.Usage?.OutputTokens ?? 0);
    });
}
