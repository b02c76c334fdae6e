using System.Text.Json;

namespace Gpud.Services.Batches;

/// <summary>
/// An endpoint a batch's requests may target, answered in-process exactly as its HTTP route answers (the API layer
/// implements it, so a batch line and a live request share one code path). Its requests run as background work: every
/// interactive request is admitted before them.
/// </summary>
public interface IBatchEndpoint
{
    /// <summary>The route, as a batch names it: <c>/v1/chat/completions</c>.</summary>
    string Url { get; }

    /// <summary>Answers one request body for <paramref name="project"/>; a client error is an answer (4xx), not an exception.</summary>
    Task<BatchAnswer> AnswerAsync(string project, JsonElement body, CancellationToken cancellationToken);
}

/// <summary>An HTTP-like answer: its status code, its JSON body, and the tokens it used (0 for an error).</summary>
public sealed record BatchAnswer(int StatusCode, string Body, int InputTokens = 0, int OutputTokens = 0);
