using System.Security.Cryptography;

namespace Gpud.Api.Observability;

/// <summary>
/// Gives every request an id (<c>req_…</c>, OpenAI's shape) in the <c>x-request-id</c> response header, in
/// <see cref="HttpContext.TraceIdentifier"/> and in the logging scope, so a client's report can be found in the logs.
/// </summary>
internal sealed class RequestIdMiddleware(RequestDelegate next, ILogger<RequestIdMiddleware> logger)
{
    public const string Header = "x-request-id";

    public async Task InvokeAsync(HttpContext context)
    {
        var id = "req_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        context.TraceIdentifier = id;
        // Set when the response starts, not now: the exception handler clears headers before writing an error.
        context.Response.OnStarting(static state =>
        {
            var http = (HttpContext)state;
            http.Response.Headers[Header] = http.TraceIdentifier;
            return Task.CompletedTask;
        }, context);
        using var scope = logger.BeginScope(new Dictionary<string, object> { ["RequestId"] = id });
        await next(context);
    }
}
