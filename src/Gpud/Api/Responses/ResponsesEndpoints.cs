using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Security.Claims;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gpud.Api.Auth;
using Gpud.Api.Errors;
using Gpud.Api.Inference;
using Gpud.Api.Lists;
using Gpud.Engine.Generation;
using Gpud.Engine.Templates;
using Gpud.Services.Errors;
using Gpud.Services.Ids;
using Gpud.Services.Inference;
using Gpud.Services.Responses;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;

namespace Gpud.Api.Responses;

/// <summary>
/// OpenAI's Responses API over the chat pipeline: the request is read as a chat completion (<see cref="ResponseRequest"/>),
/// the answer comes back as output items — reasoning, a message, function calls — whole or as the API's typed stream
/// events, and is stored (unless <c>store</c> is false) to be retrieved, listed by input item, deleted, or continued.
/// </summary>
internal static class ResponsesEndpoints
{
    public static RouteGroupBuilder MapResponses(this RouteGroupBuilder v1)
    {
        v1.MapPost("/responses", Create).WithTags("Responses")
            .Accepts<CreateResponseRequest>("application/json")
            .Produces<ResponseObject>(StatusCodes.Status200OK, "application/json", "text/event-stream")
            .Produces<ErrorResponse>(StatusCodes.Status429TooManyRequests)
            .WithName("createResponse")
            .WithSummary("Answer input items (the Responses API) with a base model, a fine-tuned model, a checkpoint or an adapter.");
        v1.MapGet("/responses/{response_id}", Get).WithTags("Responses")
            .Produces<ResponseObject>(StatusCodes.Status200OK, "application/json")
            .WithName("getResponse").WithSummary("Retrieve a stored response.");
        v1.MapDelete("/responses/{response_id}", Delete).WithTags("Responses")
            .WithName("deleteResponse").WithSummary("Delete a stored response (a response that continues it can no longer be continued further).");
        v1.MapPost("/responses/{response_id}/cancel", Cancel).WithTags("Responses")
            .Produces<ResponseObject>(StatusCodes.Status200OK, "application/json")
            .WithName("cancelResponse").WithSummary("Cancel a background response that is queued or running.");
        v1.MapGet("/responses/{response_id}/input_items", InputItems).WithTags("Responses")
            .Produces<ResponseItemList>(StatusCodes.Status200OK, "application/json")
            .WithName("listInputItems").WithSummary("List a stored response's input items (those of its own request).");
        return v1;
    }

    private static async Task<IResult> Create(JsonElement body, ClaimsPrincipal user, ModelResolver models, InferenceService inference,
        ResponseStore store, BackgroundResponses background, TimeProvider time, IOptions<JsonOptions> json, HttpContext context)
    {
        var call = Start(body, user.Project(), models, inference, store, time, json.Value.SerializerOptions, batchPriority: false, context.RequestAborted, background);
        if (call.Background)
        {
            RunInBackground(call, store, background);
            return TypedResults.Json(call.Shape.Response("queued", [], null), call.Shape.Json);
        }
        if (call.Stream) return TypedResults.ServerSentEvents(StreamEvents(call.Shape, call.Run, call.Save, context.RequestAborted));
        return TypedResults.Json(await Whole(call, context.RequestAborted), call.Shape.Json);
    }

    /// <summary>
    /// A background response's run: <c>in_progress</c> once it starts, then its final object (completed, incomplete or
    /// failed with the error); a cancel has already written <c>cancelled</c>, and a shutdown leaves it to the next start.
    /// </summary>
    private static void RunInBackground(ResponseCall call, ResponseStore store, BackgroundResponses background)
    {
        var shape = call.Shape;
        background.Run(shape.Id, async cancellationToken =>
        {
            store.AdvanceBackground(shape.Id, BackgroundStatus.InProgress, JsonSerializer.Serialize(shape.Response(BackgroundStatus.InProgress, [], null), shape.Json));
            try
            {
                await Whole(call, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // Cancelled (already recorded) or gpud is stopping (the next start marks it failed).
            }
            catch (Exception e)
            {
                var error = new JsonObject { ["code"] = e is GpudException { Code: { } code } ? code : "server_error", ["message"] = e.Message };
                var failed = ResponseStore.WithStatus(JsonSerializer.Serialize(shape.Response(BackgroundStatus.Failed, [], null), shape.Json), BackgroundStatus.Failed, error);
                store.AdvanceBackground(shape.Id, BackgroundStatus.Failed, failed);
            }
        });
    }

    private static ContentHttpResult Cancel(string response_id, ClaimsPrincipal user, ResponseStore store, BackgroundResponses background)
    {
        var response = store.Cancel(user.Project(), response_id);
        background.Cancel(response_id);
        return TypedResults.Text(response, "application/json");
    }

    /// <summary>A response under way: what it answers, its run, and how it is stored once complete.</summary>
    internal sealed record ResponseCall(ResponseShape Shape, GenerationRun Run, Action<ResponseObject> Save, bool Stream, bool Background);

    /// <summary>
    /// Validates and queues a request (every 4xx happens here, before a stream could start). A background request is
    /// stored as <c>queued</c> and runs under its own token, not the request's; <paramref name="batchPriority"/> queues
    /// it behind interactive requests (a Batch API line).
    /// </summary>
    internal static ResponseCall Start(JsonElement body, string project, ModelResolver models, InferenceService inference, ResponseStore store,
        TimeProvider time, JsonSerializerOptions json, bool batchPriority, CancellationToken cancellationToken, BackgroundResponses? background = null)
    {
        var parsed = ResponseRequest.Parse(body, previous => store.Conversation(project, previous));
        TextGenerationRequest request;
        try
        {
            request = TextGenerationRequest.Parse(TextGenerationKind.Chat, parsed.Chat, name => models.Resolve(project, name), inference);
        }
        catch (GpudException e)
        {
            throw ResponseRequest.Translate(e);
        }
        if (batchPriority && parsed.Stream) throw Batches.BatchAnswers.NoStreaming();
        if (batchPriority && parsed.Background)
            throw GpudException.Invalid("A batch line cannot ask for a background response: the batch already runs in the background.", "background");
        var shape = new ResponseShape(ResourceId.New("resp_"), time.GetUtcNow().ToUnixTimeSeconds(), request, parsed.Echo, parsed.Store, parsed.Background, json);
        GenerationRun run;
        if (parsed.Background)
        {
            ArgumentNullException.ThrowIfNull(background);
            try
            {
                run = inference.Submit(request.Model, request.Inputs, background.Register(shape.Id), batchPriority);
            }
            catch
            {
                background.Forget(shape.Id); // refused (a full queue): nothing was stored, nothing runs
                throw;
            }
            store.SaveBackground(project, shape.Id, shape.CreatedAt, parsed.Echo.PreviousResponseId, parsed.Input,
                JsonSerializer.Serialize(shape.Response(BackgroundStatus.Queued, [], null), json));
        }
        else
        {
            run = inference.Submit(request.Model, request.Inputs, cancellationToken, batchPriority);
        }
        // Stored once complete (a client that goes away mid-stream leaves nothing); a background one is updated in place.
        Action<ResponseObject> save = parsed.Background
            ? r => store.AdvanceBackground(r.Id, r.Status, JsonSerializer.Serialize(r, shape.Json))
            : parsed.Store
                ? r => store.Save(project, r.Id, r.CreatedAt, parsed.Echo.PreviousResponseId, parsed.Input, JsonSerializer.Serialize(r, shape.Json))
                : _ => { };
        return new ResponseCall(shape, run, save, parsed.Stream, parsed.Background);
    }

    /// <summary>The whole response once the run ends: reasoning, the message, function calls; stored if asked.</summary>
    internal static async Task<ResponseObject> Whole(ResponseCall call, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(call);
        var (shape, request) = (call.Shape, call.Shape.Request);
        var result = await TextGenerationEndpoints.Collect(call.Run, request, cancellationToken);
        var choice = result.Best(0, request).Single();
        var answer = ChatAnswerStream.Read(choice.Text, shape.Reasons, request.Tools, complete: choice.Reason == FinishReason.Stop);
        var output = new List<object>();
        if (answer.Reasoning is { } reasoning) output.Add(ReasoningItem(ResourceId.New("rs_"), reasoning, "completed"));
        var calls = TextGenerationEndpoints.Allowed(answer.Calls, request);
        if (calls.Count == 0 || answer.Content.Length > 0) output.Add(MessageItem(ResourceId.New("msg_"), answer.Content, Status(choice.Reason)));
        output.AddRange(calls.Select(c => FunctionCallItem(c, "completed")));
        var response = shape.Response(Status(choice.Reason), output, choice.Tokens);
        call.Save(response);
        return response;
    }

    private static ContentHttpResult Get(string response_id, ClaimsPrincipal user, ResponseStore store) =>
        TypedResults.Text(store.Get(user.Project(), response_id), "application/json");

    private static Ok<ResponseDeleted> Delete(string response_id, ClaimsPrincipal user, ResponseStore store)
    {
        store.Delete(user.Project(), response_id);
        return TypedResults.Ok(new ResponseDeleted(response_id, "response", true));
    }

    private static Results<Ok<ResponseItemList>, JsonHttpResult<ErrorResponse>> InputItems(string response_id, ClaimsPrincipal user, ResponseStore store,
        string? limit, string? order, string? after)
    {
        if (!ListQuery.TryParseLimit(limit, out var take, out var error)) return error;
        var (items, more) = store.InputItems(user.Project(), response_id, RequestFields.ListLimit(take, 20, 100), RequestFields.Ascending(order, fallback: false), after);
        string? Id(JsonElement item) => item.TryGetProperty("id", out var id) ? id.GetString() : null;
        return TypedResults.Ok(new ResponseItemList("list", items, items.Count > 0 ? Id(items[0]) : null, items.Count > 0 ? Id(items[^1]) : null, more));
    }

    /// <summary>
    /// The stream: response.created and .in_progress, then per output item its added/delta/done events in order
    /// (reasoning text as it comes, the message's text as it comes, function calls whole once the answer is complete),
    /// then response.completed (or .incomplete when max_output_tokens cut it). Every event carries its sequence number.
    /// </summary>
    private static async IAsyncEnumerable<SseItem<string>> StreamEvents(ResponseShape shape, GenerationRun run, Action<ResponseObject> save,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var writer = new EventWriter(shape);
        yield return writer.Lifecycle("response.created", shape.Response("in_progress", [], null));
        yield return writer.Lifecycle("response.in_progress", shape.Response("in_progress", [], null));
        var answer = new ChatAnswerStream(shape.Reasons, shape.Request.Tools);
        var tokens = 0;
        await foreach (var (ev, error) in TextGenerationEndpoints.Events(run, shape.Json, cancellationToken))
        {
            if (error is not null)
            {
                yield return writer.Error(error);
                yield break;
            }
            if (ev!.Kind == GenerationEventKind.Token)
            {
                tokens++;
                var (reasoning, text) = answer.Push(ev.Text);
                foreach (var item in writer.Reasoning(reasoning).Concat(writer.Text(text))) yield return item;
            }
            else if (ev.Kind == GenerationEventKind.Finished && ev.Reason != FinishReason.Cancelled)
            {
                var (reasoning, text) = answer.Push(ev.Text);
                var end = answer.Finish(complete: ev.Reason == FinishReason.Stop);
                var calls = TextGenerationEndpoints.Allowed(end.Calls, shape.Request);
                var status = Status(ev.Reason);
                var events = writer.Reasoning(reasoning + end.Reasoning).Concat(writer.Text(text + end.Content))
                    .Concat(writer.CloseReasoning())
                    .Concat(calls.Count == 0 || writer.HasMessage ? writer.CloseMessage(status) : [])
                    .Concat(calls.SelectMany(writer.FunctionCall));
                foreach (var item in events) yield return item;
                var response = shape.Response(status, writer.Output, tokens);
                save(response);
                yield return writer.Lifecycle(status == "completed" ? "response.completed" : "response.incomplete", response);
            }
        }
    }

    private static string Status(FinishReason reason) => reason == FinishReason.Length ? "incomplete" : "completed";

    private static ResponseMessageItem MessageItem(string id, string text, string status) =>
        new(id, "message", status, "assistant", [new ResponseOutputText("output_text", text, [], [])]);

    private static ResponseReasoningItem ReasoningItem(string id, string text, string status) =>
        new(id, "reasoning", [], [new ResponseReasoningText("reasoning_text", text)], status);

    private static ResponseFunctionCallItem FunctionCallItem(ParsedToolCall call, string status) =>
        new(ResourceId.New("fc_"), "function_call", status, ResourceId.New("call_"), call.Name, call.Arguments);

    /// <summary>One response's identity and the request it answers: builds the response object at any stage.</summary>
    internal sealed class ResponseShape(string id, long createdAt, TextGenerationRequest request, ResponseEcho echo, bool store, bool background,
        JsonSerializerOptions json)
    {
        private static readonly JsonElement TextFormat = JsonSerializer.SerializeToElement(new { format = new { type = "text" } });
        private static readonly JsonElement Empty = JsonSerializer.SerializeToElement(new { });
        private static readonly JsonElement NoTools = JsonSerializer.SerializeToElement(Array.Empty<object>());
        private static readonly JsonElement Auto = JsonSerializer.SerializeToElement("auto");

        public string Id => id;

        public long CreatedAt => createdAt;

        public TextGenerationRequest Request => request;

        public JsonSerializerOptions Json => json;

        public bool Reasons => request.Model.Base.ChatTemplate?.Reasons ?? false;

        public ResponseObject Response(string status, IReadOnlyList<object> output, int? outputTokens)
        {
            var input = request.Inputs[0].Prompt.Count;
            var usage = outputTokens is { } n ? new ResponseUsage(input, new ResponseInputTokensDetails(0), n, new ResponseOutputTokensDetails(0), input + n) : null;
            return new ResponseObject(id, "response", createdAt, status, background, null, status == "incomplete" ? new ResponseIncompleteDetails("max_output_tokens") : null,
                echo.Instructions, echo.MaxOutputTokens, request.Model.Id, output, echo.ParallelToolCalls, echo.PreviousResponseId, new ResponseReasoningSettings(null, null), store,
                echo.Temperature, echo.Text ?? TextFormat, echo.ToolChoice ?? Auto, echo.Tools ?? NoTools, echo.TopP, "disabled", usage, echo.User, echo.Metadata ?? Empty);
        }
    }

    /// <summary>Numbers the stream's events and tracks its open output items.</summary>
    private sealed class EventWriter(ResponseShape shape)
    {
        private int _sequence;
        private (int Index, string Id, StringBuilder Text)? _reasoning;
        private (int Index, string Id, StringBuilder Text)? _message;
        private readonly List<object> _output = [];

        public IReadOnlyList<object> Output => _output;

        public bool HasMessage => _message is not null;

        public SseItem<string> Lifecycle(string type, ResponseObject response) => Event(type, new { response });

        /// <summary>A failure once the stream has started: the API's <c>error</c> event (the SDKs raise it).</summary>
        public SseItem<string> Error(string envelope)
        {
            var error = JsonNode.Parse(envelope)!["error"]!.AsObject();
            return Event("error", new { code = (string?)error["code"], message = (string?)error["message"], param = (string?)error["param"] });
        }

        public IEnumerable<SseItem<string>> Reasoning(string delta)
        {
            if (delta.Length == 0) yield break;
            if (_reasoning is not { } open)
            {
                open = (_output.Count, ResourceId.New("rs_"), new StringBuilder());
                _reasoning = open;
                _output.Add(new ResponseReasoningItem(open.Id, "reasoning", [], [], "in_progress"));
                yield return Event("response.output_item.added", new { output_index = open.Index, item = _output[open.Index] });
                yield return Event("response.content_part.added", new { item_id = open.Id, output_index = open.Index, content_index = 0, part = new ResponseReasoningText("reasoning_text", "") });
            }
            open.Text.Append(delta);
            yield return Event("response.reasoning_text.delta", new { item_id = open.Id, output_index = open.Index, content_index = 0, delta });
        }

        public IEnumerable<SseItem<string>> CloseReasoning()
        {
            if (_reasoning is not { } open || _output[open.Index] is ResponseReasoningItem { Status: "completed" }) yield break;
            var text = open.Text.ToString();
            yield return Event("response.reasoning_text.done", new { item_id = open.Id, output_index = open.Index, content_index = 0, text });
            yield return Event("response.content_part.done", new { item_id = open.Id, output_index = open.Index, content_index = 0, part = new ResponseReasoningText("reasoning_text", text) });
            _output[open.Index] = ReasoningItem(open.Id, text, "completed");
            yield return Event("response.output_item.done", new { output_index = open.Index, item = _output[open.Index] });
        }

        public IEnumerable<SseItem<string>> Text(string delta)
        {
            if (delta.Length == 0) yield break;
            foreach (var item in CloseReasoning()) yield return item;
            foreach (var item in OpenMessage()) yield return item;
            var open = _message!.Value;
            open.Text.Append(delta);
            yield return Event("response.output_text.delta", new { item_id = open.Id, output_index = open.Index, content_index = 0, delta, logprobs = Array.Empty<object>() });
        }

        public IEnumerable<SseItem<string>> CloseMessage(string status)
        {
            foreach (var item in OpenMessage()) yield return item; // an empty answer is still a message
            var open = _message!.Value;
            var text = open.Text.ToString();
            var part = new ResponseOutputText("output_text", text, [], []);
            yield return Event("response.output_text.done", new { item_id = open.Id, output_index = open.Index, content_index = 0, text, logprobs = Array.Empty<object>() });
            yield return Event("response.content_part.done", new { item_id = open.Id, output_index = open.Index, content_index = 0, part });
            _output[open.Index] = MessageItem(open.Id, text, status);
            yield return Event("response.output_item.done", new { output_index = open.Index, item = _output[open.Index] });
        }

        /// <summary>A call arrives whole: added, its arguments in one delta, done.</summary>
        public IEnumerable<SseItem<string>> FunctionCall(ParsedToolCall call)
        {
            var index = _output.Count;
            var done = FunctionCallItem(call, "completed");
            _output.Add(done with { Status = "in_progress", Arguments = "" });
            yield return Event("response.output_item.added", new { output_index = index, item = _output[index] });
            yield return Event("response.function_call_arguments.delta", new { item_id = done.Id, output_index = index, delta = done.Arguments });
            yield return Event("response.function_call_arguments.done", new { item_id = done.Id, output_index = index, name = done.Name, arguments = done.Arguments });
            _output[index] = done;
            yield return Event("response.output_item.done", new { output_index = index, item = done });
        }

        private IEnumerable<SseItem<string>> OpenMessage()
        {
            if (_message is not null) yield break;
            var open = (_output.Count, ResourceId.New("msg_"), new StringBuilder());
            _message = open;
            _output.Add(new ResponseMessageItem(open.Item2, "message", "in_progress", "assistant", []));
            yield return Event("response.output_item.added", new { output_index = open.Item1, item = _output[open.Item1] });
            yield return Event("response.content_part.added", new { item_id = open.Item2, output_index = open.Item1, content_index = 0, part = new ResponseOutputText("output_text", "", [], []) });
        }

        /// <summary>The event's JSON: its type, its sequence number, then its fields.</summary>
        private SseItem<string> Event(string type, object fields)
        {
            var data = new JsonObject { ["type"] = type, ["sequence_number"] = _sequence++ };
            var serialized = JsonSerializer.SerializeToNode(fields, shape.Json)!.AsObject();
            var properties = serialized.ToList();
            serialized.Clear(); // detached, the nodes move over without a copy
            foreach (var (name, value) in properties) data[name] = value;
            return new SseItem<string>(data.ToJsonString(shape.Json), type);
        }
    }
}
