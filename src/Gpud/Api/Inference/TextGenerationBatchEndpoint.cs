using System.Text.Json;
using Gpud.Api.Batches;
using Gpud.Services.Batches;
using Gpud.Services.ChatCompletions;
using Gpud.Services.Ids;
using Gpud.Services.Inference;

namespace Gpud.Api.Inference;

/// <summary><c>/v1/completions</c> or <c>/v1/chat/completions</c> for the Batch API: the route's own parsing and answer.</summary>
internal sealed class TextGenerationBatchEndpoint(TextGenerationKind kind, ModelResolver models, InferenceService inference,
    ChatCompletionStore store, JsonSerializerOptions json, TimeProvider time) : IBatchEndpoint
{
    public string Url => kind == TextGenerationKind.Chat ? "/v1/chat/completions" : "/v1/completions";

    public Task<BatchAnswer> AnswerAsync(string project, JsonElement body, CancellationToken cancellationToken) => BatchAnswers.Answer(json, async () =>
    {
        var request = TextGenerationRequest.Parse(kind, body, name => models.Resolve(project, name), inference);
        if (request.Stream) throw BatchAnswers.NoStreaming();
        var run = inference.Submit(request.Model, request.Inputs, cancellationToken, batchPriority: true);
        var result = await TextGenerationEndpoints.Collect(run, request, cancellationToken);
        var created = time.GetUtcNow().ToUnixTimeSeconds();
        var usage = result.Usage(request);
        if (kind == TextGenerationKind.Completion)
        {
            var completion = TextGenerationEndpoints.CompletionBody(request, result, ResourceId.New("cmpl-"), created);
            return new BatchAnswer(200, JsonSerializer.Serialize(completion, json), usage.PromptTokens, usage.CompletionTokens);
        }
        var chat = TextGenerationEndpoints.ChatBody(request, result, ResourceId.New("chatcmpl-"), created);
        TextGenerationEndpoints.Saver(request, body, project, store, json)(chat);
        return new BatchAnswer(200, JsonSerializer.Serialize(chat, json), usage.PromptTokens, usage.CompletionTokens);
    });
}
