namespace Gpud.Api.Observability;

/// <summary>
/// Returns the request's id (<c>req_…</c>, set by <see cref="RequestIdContextFactory"/>) in the <c>x-request-id</c>
/// response header, so a client's report can be found in the logs, where every line of the request carries it as
/// <c>RequestId</c>. A server that bypasses the factory (the in-memory test server) gets the id here instead.
/// </summary>
internal sealed class RequestIdMiddleware(RequestDelegate next, ILogger<RequestIdMiddleware> logger)
{
    public const string Header = "x-request-id";

    public async Task InvokeAsync(HttpContext context)
    {
        IDisposable? scope = null;
        if (!context.TraceIdentifier.StartsWith("req_", StringComparison.Ordinal))
        {
            context.TraceIdentifier = RequestIdContextFactory.NewId();
            scope = logger.BeginScope(new Dictionary<string, object> { ["RequestId"] = context.TraceIdentifier });
        }
        // Set when the response starts, not now: the exception handler clears headers before writing an error.
        context.Response.OnStarting(static state =>
        {
            var http = (HttpContext)state;
            http.Response.Headers[Header] = http.TraceIdentifier;
            return Task.CompletedTask;
        }, context);
        using (scope)
        {
            await next(context);
        }
    }
}
