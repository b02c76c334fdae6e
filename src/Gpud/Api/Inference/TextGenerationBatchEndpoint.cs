using System.Text.Json;
using Gpud.Api.Batches;
using Gpud.Services.Batches;
using Gpud.Services.Ids;
using Gpud.Services.Inference;

namespace Gpud.Api.Inference;

/// <summary><c>/v1/completions</c> or <c>/v1/chat/completions</c> for the Batch API: the route's own parsing and answer.</summary>
internal sealed class TextGenerationBatchEndpoint(TextGenerationKind kind, ModelResolver models, InferenceService inference,
    JsonSerializerOptions json, TimeProvider time) : IBatchEndpoint
{
    public string Url => kind == TextGenerationKind.Chat ? "/v1/chat/completions" : "/v1/completions";

    public Task<BatchAnswer> AnswerAsync(string project, JsonElement body, CancellationToken cancellationToken) => BatchAnswers.Answer(json, async () =>
    {
        var request = TextGenerationRequest.Parse(kind, body, name => models.Resolve(project, name), inference);
        if (request.Stream) throw BatchAnswers.NoStreaming();
        var run = inference.Submit(request.Model, request.Inputs, cancellationToken, background: true);
        var result = await TextGenerationEndpoints.Collect(run, request, cancellationToken);
        var created = time.GetUtcNow().ToUnixTimeSeconds();
        var usage = result.Usage(request);
        var response = kind == TextGenerationKind.Chat
            ? JsonSerializer.Serialize(TextGenerationEndpoints.ChatBody(request, result, ResourceId.New("chatcmpl-"), created), json)
            : JsonSerializer.Serialize(TextGenerationEndpoints.CompletionBody(request, result, ResourceId.New("cmpl-"), created), json);
        return new BatchAnswer(200, response, usage.PromptTokens, usage.CompletionTokens);
    });
}
