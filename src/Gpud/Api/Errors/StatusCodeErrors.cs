using Microsoft.AspNetCore.Diagnostics;

namespace Gpud.Api.Errors;

/// <summary>
/// Gives bodiless error responses from routing (unknown route, wrong method) the OpenAI envelope.
/// Used with <c>UseStatusCodePages</c>, which only runs when nothing has written a body.
/// </summary>
internal static class StatusCodeErrors
{
    public static Task WriteAsync(StatusCodeContext context)
    {
        var http = context.HttpContext;
        var request = http.Request;
        var status = http.Response.StatusCode;
        var (message, code) = status switch
        {
            StatusCodes.Status404NotFound => ($"Invalid URL ({request.Method} {request.Path})", (string?)null),
            StatusCodes.Status405MethodNotAllowed =>
                ($"Method {request.Method} is not allowed for {request.Path}. Allowed: {http.Response.Headers.Allow}.", "method_not_allowed"),
            StatusCodes.Status413PayloadTooLarge => ("The request body is too large.", "request_too_large"),
            StatusCodes.Status415UnsupportedMediaType => ($"Unsupported Content-Type '{request.ContentType}'.", "unsupported_media_type"),
            _ => ($"The request failed with status {status}.", null),
        };
        return ApiErrors.WriteAsync(http, status, message, null, code);
    }
}
