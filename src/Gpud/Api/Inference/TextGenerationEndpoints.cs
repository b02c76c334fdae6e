using System.Net.ServerSentEvents;
using System.Runtime.CompilerServices;
using System.Security.Claims;
using System.Text;
using System.Text.Json;
using Gpud.Api.Auth;
using Gpud.Api.Errors;
using Gpud.Engine.Generation;
using Gpud.Engine.Templates;
using Gpud.Engine.Tokenization;
using Gpud.Services.ChatCompletions;
using Gpud.Services.Errors;
using Gpud.Services.Ids;
using Gpud.Services.Inference;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;

namespace Gpud.Api.Inference;

/// <summary>
/// OpenAI's <c>/v1/completions</c> and <c>/v1/chat/completions</c>. Validation errors are plain JSON 4xx before any
/// stream starts; a failure mid-stream is a <c>data: {"error": …}</c> chunk. A client that goes away cancels its rows.
/// </summary>
internal static class TextGenerationEndpoints
{
    // OpenAI's system_fingerprint marks a backend whose seeded outputs may differ from before: it changes whenever
    // gpud's sampling draw or the forward pass's rounding does (2: one uniform per row and step, inverse CDF on the
    // device; 3: fused q/k/v and gate/up matmuls, RMSNorm as one layer_norm).
    private const string Fingerprint = "fp_gpud_3";

    public static RouteGroupBuilder MapTextGeneration(this RouteGroupBuilder v1)
    {
        v1.MapPost("/completions", Completions).WithTags("Completions")
            .Accepts<CreateCompletionRequest>("application/json")
            .Produces<CompletionResponse>(StatusCodes.Status200OK, "application/json", "text/event-stream")
            .Produces<ErrorResponse>(StatusCodes.Status429TooManyRequests)
            .WithName("createCompletion").WithSummary("Complete a prompt with a base model, a fine-tuned model, a checkpoint or an adapter.");
        v1.MapPost("/chat/completions", Chat).WithTags("Chat")
            .Accepts<CreateChatCompletionRequest>("application/json")
            .Produces<ChatCompletionResponse>(StatusCodes.Status200OK, "application/json", "text/event-stream")
            .Produces<ErrorResponse>(StatusCodes.Status429TooManyRequests)
            .WithName("createChatCompletion").WithSummary("Answer a conversation, formatted with the model's chat template.");
        return v1;
    }

    private static async Task<IResult> Completions(JsonElement body, ClaimsPrincipal user, ModelResolver models, InferenceService inference,
        IOptions<JsonOptions> json, HttpContext context)
    {
        var (request, run, id, created) = Start(TextGenerationKind.Completion, "cmpl-", body, user, models, inference, context);
        if (request.Stream) return Stream(CompletionChunks(request, run, id, created, json.Value.SerializerOptions, context.RequestAborted));
        return TypedResults.Ok(CompletionBody(request, await Collect(run, request, context.RequestAborted), id, created));
    }

    /// <summary>A whole completion: every prompt's choices (with best_of, its best n), echo and logprobs as asked.</summary>
    internal static CompletionResponse CompletionBody(TextGenerationRequest request, CollectedRun result, string id, long created)
    {
        var tokenizer = request.Model.Base.Tokenizer;
        var choices = new List<CompletionChoice>();
        for (var p = 0; p < request.Inputs.Count; p++)
        {
            foreach (var (choice, rank) in result.Best(p, request).Select((c, r) => (c, r)))
            {
                var text = (request.Echo ? request.PromptTexts[p] : "") + choice.Text;
                choices.Add(new CompletionChoice(text, p * request.N + rank,
                    request.Logprobs is { } k ? CompletionLogprobs(tokenizer, request.Echo ? result.Prompt[p] : null, request.Echo ? request.Inputs[p].Prompt : null, choice, k) : null,
                    FinishReason(choice.Reason)));
            }
        }
        return new CompletionResponse(id, "text_completion", created, request.Model.Id, Fingerprint, choices, result.Usage(request));
    }

    private static async Task<IResult> Chat(JsonElement body, ClaimsPrincipal user, ModelResolver models, InferenceService inference,
        ChatCompletionStore store, IOptions<JsonOptions> json, HttpContext context)
    {
        var (request, run, id, created) = Start(TextGenerationKind.Chat, "chatcmpl-", body, user, models, inference, context);
        var save = Saver(request, body, user.Project(), store, json.Value.SerializerOptions);
        if (request.Stream) return Stream(ChatChunks(request, run, id, created, json.Value.SerializerOptions, save, context.RequestAborted));
        var response = ChatBody(request, await Collect(run, request, context.RequestAborted), id, created);
        save(response);
        return TypedResults.Ok(response);
    }

    /// <summary>With <c>store: true</c>, keeps a complete answer with the request's messages (a client gone mid-stream leaves nothing).</summary>
    internal static Action<ChatCompletionResponse> Saver(TextGenerationRequest request, JsonElement body, string project, ChatCompletionStore store,
        JsonSerializerOptions json)
    {
        if (!request.Store) return _ => { };
        var messages = body.GetProperty("messages").GetRawText();
        return response => store.Save(project, response.Id, response.Created, response.Model, request.Metadata, messages, JsonSerializer.Serialize(response, json));
    }

    /// <summary>A whole chat completion: each choice's message, split into reasoning, content and tool calls.</summary>
    internal static ChatCompletionResponse ChatBody(TextGenerationRequest request, CollectedRun result, string id, long created)
    {
        var tokenizer = request.Model.Base.Tokenizer;
        var reasons = request.Model.Base.ChatTemplate?.Reasons ?? false;
        var choices = result.Best(0, request).Select((c, i) =>
        {
            var answer = ChatAnswerStream.Read(c.Text, reasons, request.Tools, complete: c.Reason == Engine.Generation.FinishReason.Stop);
            var message = answer.Calls.Count == 0
                ? new ChatMessage("assistant", answer.Content, null, ReasoningContent: answer.Reasoning)
                : new ChatMessage("assistant", answer.Content.Length == 0 ? null : answer.Content, null, Allowed(answer.Calls, request).Select(ToolCall).ToList(), answer.Reasoning);
            var reason = answer.Calls.Count == 0 ? FinishReason(c.Reason) : "tool_calls";
            return new ChatChoice(i, message,
                request.Logprobs is { } k ? new ChatLogprobs(c.Logprobs.Select(l => ChatLogprob(tokenizer, l, k)).ToList(), null) : null,
                reason);
        }).ToList();
        return new ChatCompletionResponse(id, "chat.completion", created, request.Model.Id, Fingerprint, choices, result.Usage(request));
    }

    /// <summary>Validates and queues the request (every 4xx happens here, before a stream could start).</summary>
    private static (TextGenerationRequest Request, GenerationRun Run, string Id, long Created) Start(TextGenerationKind kind, string idPrefix,
        JsonElement body, ClaimsPrincipal user, ModelResolver models, InferenceService inference, HttpContext context)
    {
        var request = TextGenerationRequest.Parse(kind, body, name => models.Resolve(user.Project(), name), inference);
        var run = inference.Submit(request.Model, request.Inputs, context.RequestAborted);
        return (request, run, ResourceId.New(idPrefix), DateTimeOffset.UtcNow.ToUnixTimeSeconds());
    }

    private static ServerSentEventsResult<string> Stream(IAsyncEnumerable<string> chunks) => TypedResults.ServerSentEvents(Done(chunks));

    private static async IAsyncEnumerable<string> Done(IAsyncEnumerable<string> chunks)
    {
        await foreach (var chunk in chunks) yield return chunk;
        yield return "[DONE]";
    }

    private static async IAsyncEnumerable<string> CompletionChunks(TextGenerationRequest request, GenerationRun run, string id, long created,
        JsonSerializerOptions json, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var tokenizer = request.Model.Base.Tokenizer;
        int? completionTokens = request.IncludeUsage ? 0 : null;
        string Chunk(CompletionChoice choice) => JsonSerializer.Serialize(new CompletionResponse(id, "text_completion", created, request.Model.Id, Fingerprint, [choice], null), json);
        if (request.Echo)
        {
            for (var p = 0; p < request.Inputs.Count; p++)
                for (var c = 0; c < request.N; c++) yield return Chunk(new CompletionChoice(request.PromptTexts[p], p * request.N + c, null, null));
        }
        var offsets = new int[request.Inputs.Count * request.N];
        await foreach (var e in Events(run, json, cancellationToken))
        {
            if (e.Error is { } error)
            {
                yield return error;
                yield break;
            }
            var ev = e.Event!;
            var index = ev.Prompt * request.N + ev.Choice;
            if (ev.Kind == GenerationEventKind.Token)
            {
                completionTokens++;
                CompletionLogprobs? logprobs = null;
                if (request.Logprobs is { } k && ev.Logprob is { } lp)
                {
                    var token = TokenText(tokenizer, lp.TokenId);
                    logprobs = new CompletionLogprobs([token], [lp.Logprob], [Top(tokenizer, lp, k)], [offsets[index]]);
                }
                offsets[index] += ev.Text.Length;
                if (ev.Text.Length > 0 || logprobs is not null) yield return Chunk(new CompletionChoice(ev.Text, index, logprobs, null));
            }
            else if (ev.Kind == GenerationEventKind.Finished && ev.Reason != Engine.Generation.FinishReason.Cancelled)
            {
                yield return Chunk(new CompletionChoice(ev.Text, index, null, FinishReason(ev.Reason)));
            }
        }
        if (completionTokens is { } completed)
            yield return JsonSerializer.Serialize(new CompletionResponse(id, "text_completion", created, request.Model.Id, Fingerprint, [], UsageOf(request, completed)), json);
    }

    private static async IAsyncEnumerable<string> ChatChunks(TextGenerationRequest request, GenerationRun run, string id, long created,
        JsonSerializerOptions json, Action<ChatCompletionResponse> save, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var tokenizer = request.Model.Base.Tokenizer;
        var generated = 0;
        var whole = request.Store ? new StreamedChoice[request.N] : null; // what a stored completion keeps of the stream
        string Chunk(ChatChunkChoice choice) => JsonSerializer.Serialize(new ChatCompletionChunk(id, "chat.completion.chunk", created, request.Model.Id, Fingerprint, [choice], null), json);
        for (var c = 0; c < request.N; c++) yield return Chunk(new ChatChunkChoice(c, new ChatDelta("assistant", ""), null, null));
        // Reasoning is split off as reasoning_content; with tools, text that may be a call is held back until the answer
        // is complete, then sent as calls or as content.
        var reasons = request.Model.Base.ChatTemplate?.Reasons ?? false;
        var answers = Enumerable.Range(0, request.N).Select(_ => new ChatAnswerStream(reasons, request.Tools)).ToArray();
        await foreach (var e in Events(run, json, cancellationToken))
        {
            if (e.Error is { } error)
            {
                yield return error;
                yield break;
            }
            var ev = e.Event!;
            if (ev.Kind == GenerationEventKind.Token)
            {
                generated++;
                var logprobs = request.Logprobs is { } k && ev.Logprob is { } lp ? new ChatLogprobs([ChatLogprob(tokenizer, lp, k)], null) : null;
                if (whole is not null && logprobs is not null) (whole[ev.Choice] ??= new()).Logprobs.AddRange(logprobs.Content);
                var (reasoning, text) = answers[ev.Choice].Push(ev.Text);
                if (whole is not null) (whole[ev.Choice] ??= new()).Add(reasoning, text);
                if (reasoning.Length > 0) yield return Chunk(new ChatChunkChoice(ev.Choice, new ChatDelta(null, null, ReasoningContent: reasoning), null, null));
                if (text.Length > 0 || logprobs is not null) yield return Chunk(new ChatChunkChoice(ev.Choice, new ChatDelta(null, text), logprobs, null));
            }
            else if (ev.Kind == GenerationEventKind.Finished && ev.Reason != Engine.Generation.FinishReason.Cancelled)
            {
                var (reasoning, sent) = answers[ev.Choice].Push(ev.Text);
                var end = answers[ev.Choice].Finish(complete: ev.Reason == Engine.Generation.FinishReason.Stop);
                reasoning += end.Reasoning;
                if (reasoning.Length > 0) yield return Chunk(new ChatChunkChoice(ev.Choice, new ChatDelta(null, null, ReasoningContent: reasoning), null, null));
                var text = sent + end.Content;
                var made = Allowed(end.Calls, request);
                var calls = made.Select(ToolCall).ToList();
                if (whole is not null)
                {
                    var kept = whole[ev.Choice] ??= new();
                    kept.Add(reasoning, text);
                    kept.End(calls, calls.Count == 0 ? FinishReason(ev.Reason) : "tool_calls");
                }
                if (made.Count == 0)
                {
                    yield return Chunk(new ChatChunkChoice(ev.Choice, new ChatDelta(null, text.Length > 0 ? text : null), null, FinishReason(ev.Reason)));
                    continue;
                }
                if (text.Length > 0) yield return Chunk(new ChatChunkChoice(ev.Choice, new ChatDelta(null, text), null, null));
                var deltas = calls.Select((full, i) => new ChatToolCallDelta(i, full.Id, full.Type, full.Function)).ToList();
                yield return Chunk(new ChatChunkChoice(ev.Choice, new ChatDelta(null, null, deltas), null, null));
                yield return Chunk(new ChatChunkChoice(ev.Choice, new ChatDelta(null, null), null, "tool_calls"));
            }
        }
        if (whole is not null && whole.All(c => c?.Message is not null))
        {
            var choices = whole.Select((c, i) => new ChatChoice(i, c.Message!, request.Logprobs is null ? null : new ChatLogprobs(c.Logprobs, null), c.FinishReason!)).ToList();
            save(new ChatCompletionResponse(id, "chat.completion", created, request.Model.Id, Fingerprint, choices, UsageOf(request, generated)));
        }
        if (request.IncludeUsage)
            yield return JsonSerializer.Serialize(new ChatCompletionChunk(id, "chat.completion.chunk", created, request.Model.Id, Fingerprint, [], UsageOf(request, generated)), json);
    }

    /// <summary>A streamed choice as a stored completion keeps it: its whole message (as a non-streamed answer gives it), logprobs, finish reason.</summary>
    private sealed class StreamedChoice
    {
        private readonly StringBuilder _reasoning = new();
        private readonly StringBuilder _content = new();

        public ChatMessage? Message { get; private set; }

        public List<ChatTokenLogprob> Logprobs { get; } = [];

        public string? FinishReason { get; private set; }

        public void Add(string reasoning, string content)
        {
            _reasoning.Append(reasoning);
            _content.Append(content);
        }

        public void End(List<ChatToolCall> calls, string finishReason)
        {
            var reasoning = _reasoning.Length > 0 ? _reasoning.ToString() : null;
            var content = _content.ToString();
            Message = calls.Count == 0
                ? new ChatMessage("assistant", content, null, ReasoningContent: reasoning)
                : new ChatMessage("assistant", content.Length == 0 ? null : content, null, calls, reasoning);
            FinishReason = finishReason;
        }
    }

    /// <summary>The run's events; a failure becomes one OpenAI error chunk (the stream has already started).</summary>
    internal static async IAsyncEnumerable<(GenerationEvent? Event, string? Error)> Events(GenerationRun run, JsonSerializerOptions json,
        [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var reader = run.Events;
        while (true)
        {
            string? error = null;
            bool more;
            try
            {
                more = await reader.WaitToReadAsync(cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                yield break;
            }
            catch (Exception e)
            {
                var status = e is GpudException g ? ApiErrors.StatusFor(g.Kind) : StatusCodes.Status500InternalServerError;
                error = JsonSerializer.Serialize(ApiErrors.Envelope(status, e is GpudException ? e.Message : $"Generation failed: {e.Message}"), json);
                more = false;
            }
            if (error is not null)
            {
                yield return (null, error);
                yield break;
            }
            if (!more) yield break;
            while (reader.TryRead(out var e)) yield return (e, null);
        }
    }

    internal static async Task<CollectedRun> Collect(GenerationRun run, TextGenerationRequest request, CancellationToken cancellationToken)
    {
        var result = new CollectedRun(request);
        try
        {
            await foreach (var e in run.Events.ReadAllAsync(cancellationToken)) result.Add(e);
        }
        catch (Exception e) when (e is not (GpudException or OperationCanceledException))
        {
            throw new InvalidOperationException($"Generation failed: {e.Message}", e);
        }
        return result;
    }

    /// <summary>With parallel_tool_calls false, the first call only.</summary>
    internal static IReadOnlyList<ParsedToolCall> Allowed(IReadOnlyList<ParsedToolCall> calls, TextGenerationRequest request) =>
        request.ParallelToolCalls ? calls : calls.Take(1).ToList();

    private static ChatToolCall ToolCall(ParsedToolCall call) => new(ResourceId.New("call_"), "function", new ChatFunctionCall(call.Name, call.Arguments));

    private static string FinishReason(FinishReason reason) => reason switch
    {
        Engine.Generation.FinishReason.Length => "length",
        _ => "stop",
    };

    private static CompletionLogprobs CompletionLogprobs(TextTokenizer tokenizer, IReadOnlyList<TokenLogprob?>? prompt, IReadOnlyList<int>? promptTokens,
        CollectedChoice choice, int k)
    {
        var result = new CompletionLogprobs([], [], [], []);
        var offset = 0;
        if (promptTokens is not null)
        {
            for (var i = 0; i < promptTokens.Count; i++)
            {
                var token = TokenText(tokenizer, promptTokens[i]);
                var lp = prompt is not null && i < prompt.Count ? prompt[i] : null;
                result.Tokens.Add(token);
                result.TokenLogprobs.Add(lp?.Logprob);
                result.TopLogprobs.Add(lp is null ? null : Top(tokenizer, lp, k));
                result.TextOffset.Add(offset);
                offset += token.Length;
            }
        }
        for (var i = 0; i < choice.Logprobs.Count; i++)
        {
            var lp = choice.Logprobs[i];
            result.Tokens.Add(TokenText(tokenizer, lp.TokenId));
            result.TokenLogprobs.Add(lp.Logprob);
            result.TopLogprobs.Add(Top(tokenizer, lp, k));
            result.TextOffset.Add(offset + choice.Offsets[i]);
        }
        return result;
    }

    private static Dictionary<string, float> Top(TextTokenizer tokenizer, TokenLogprob logprob, int k)
    {
        var top = new Dictionary<string, float>(StringComparer.Ordinal);
        foreach (var (token, value) in logprob.Top.Take(k)) top.TryAdd(TokenText(tokenizer, token), value);
        return top;
    }

    private static ChatTokenLogprob ChatLogprob(TextTokenizer tokenizer, TokenLogprob logprob, int k)
    {
        var token = TokenText(tokenizer, logprob.TokenId);
        return new ChatTokenLogprob(token, logprob.Logprob, Bytes(token),
            logprob.Top.Take(k).Select(t => { var s = TokenText(tokenizer, t.TokenId); return new TopLogprob(s, t.Logprob, Bytes(s)); }).ToList());
    }

    private static string TokenText(TextTokenizer tokenizer, int id) => tokenizer.Decode([id], skipSpecialTokens: false, cleanUpSpaces: false);

    private static int[] Bytes(string token) => Encoding.UTF8.GetBytes(token).Select(b => (int)b).ToArray();

    /// <summary>Prompt tokens once per prompt (not per choice), completion tokens over every choice generated.</summary>
    internal static Usage UsageOf(TextGenerationRequest request, int completionTokens)
    {
        var prompt = request.Inputs.Sum(i => i.Prompt.Count);
        return new Usage(prompt, completionTokens, prompt + completionTokens);
    }

    /// <summary>A choice's whole output, assembled from its events.</summary>
    internal sealed class CollectedChoice
    {
        public StringBuilder Builder { get; } = new();
        public string Text => Builder.ToString();
        public List<TokenLogprob> Logprobs { get; } = [];
        public List<int> Offsets { get; } = [];
        public int Tokens { get; set; }
        public FinishReason Reason { get; set; } = Engine.Generation.FinishReason.Length;
        public double Score => Logprobs.Sum(l => (double)l.Logprob);
    }

    internal sealed class CollectedRun(TextGenerationRequest request)
    {
        private readonly CollectedChoice[][] _choices = request.Inputs.Select(i => i.Choices.Select(_ => new CollectedChoice()).ToArray()).ToArray();

        public IReadOnlyList<TokenLogprob?>?[] Prompt { get; } = new IReadOnlyList<TokenLogprob?>?[request.Inputs.Count];

        public void Add(GenerationEvent e)
        {
            switch (e.Kind)
            {
                case GenerationEventKind.PromptScored:
                    Prompt[e.Prompt] = e.PromptLogprobs;
                    break;
                case GenerationEventKind.Token:
                    var choice = _choices[e.Prompt][e.Choice];
                    choice.Tokens++;
                    if (e.Logprob is not null)
                    {
                        choice.Logprobs.Add(e.Logprob);
                        choice.Offsets.Add(choice.Builder.Length);
                    }
                    choice.Builder.Append(e.Text);
                    break;
                case GenerationEventKind.Finished:
                    _choices[e.Prompt][e.Choice].Builder.Append(e.Text);
                    _choices[e.Prompt][e.Choice].Reason = e.Reason;
                    break;
            }
        }

        /// <summary>The prompt's n choices; with best_of, the n with the highest total logprob, best first.</summary>
        public IEnumerable<CollectedChoice> Best(int prompt, TextGenerationRequest r) =>
            r.BestOf > r.N ? _choices[prompt].OrderByDescending(c => c.Score).Take(r.N) : _choices[prompt];

        public Usage Usage(TextGenerationRequest r) => UsageOf(r, _choices.Sum(p => p.Sum(c => c.Tokens)));
    }
}
