using Gpud.Services.Errors;

namespace Gpud.Api.Errors;

/// <summary>
/// Endpoint filter for <c>/v1</c>: a <see cref="GpudException"/> from a service becomes its OpenAI error result right
/// there, so expected failures (unknown ids, bad parameters) never travel through middleware as exceptions.
/// </summary>
internal static class ServiceErrors
{
    public static async ValueTask<object?> AsResults(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        try
        {
            return await next(context);
        }
        catch (GpudException e)
        {
            if (e.Kind == ErrorKind.TooManyRequests) context.HttpContext.Response.Headers.RetryAfter = ApiErrors.RetryAfterSeconds;
            return ApiErrors.FromException(e);
        }
    }
}
