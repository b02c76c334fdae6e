using System.Security.Cryptography;
using Microsoft.AspNetCore.Http.Features;

namespace Gpud.Api.Observability;

/// <summary>
/// Gives each request its <c>req_…</c> id (OpenAI's shape) as it is created, before the host opens the request's
/// logging scope, so every log line of the request — the host's own "Request starting/finished" included — carries
/// the id the client sees in <c>x-request-id</c>.
/// </summary>
internal sealed class RequestIdContextFactory(IServiceProvider services) : IHttpContextFactory
{
    private readonly DefaultHttpContextFactory _inner = new(services);

    public static string NewId() => "req_" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));

    public HttpContext Create(IFeatureCollection featureCollection)
    {
        var context = _inner.Create(featureCollection);
        context.TraceIdentifier = NewId();
        return context;
    }

    public void Dispose(HttpContext httpContext) => _inner.Dispose(httpContext);
}
