using System.Text.Json;
using Gpud.Services.Errors;
using Microsoft.AspNetCore.Diagnostics;

namespace Gpud.Api.Errors;

/// <summary>
/// Turns every exception that escapes an endpoint into the OpenAI envelope: service errors keep their status,
/// message and param; malformed requests are a 4xx; anything else is a logged 500 with no stack trace in the body.
/// </summary>
internal sealed partial class ApiExceptionHandler(ILogger<ApiExceptionHandler> logger) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext httpContext, Exception exception, CancellationToken cancellationToken)
    {
        if (httpContext.RequestAborted.IsCancellationRequested)
            return true; // The client is gone; there is nobody to answer.

        switch (exception)
        {
            case GpudException e:
                if (e.Kind == ErrorKind.TooManyRequests) httpContext.Response.Headers.RetryAfter = ApiErrors.RetryAfterSeconds;
                await ApiErrors.WriteAsync(httpContext, ApiErrors.StatusFor(e.Kind), e.Message, e.Param, e.Code);
                return true;
            case Files.UnsupportedMediaTypeException e:
                await ApiErrors.WriteAsync(httpContext, StatusCodes.Status415UnsupportedMediaType, e.Message, null, "unsupported_media_type");
                return true;
            case BadHttpRequestException e:
                var (message, code) = DescribeBadRequest(e);
                await ApiErrors.WriteAsync(httpContext, e.StatusCode, message, null, code);
                return true;
            case JsonException e:
                await ApiErrors.WriteAsync(httpContext, StatusCodes.Status400BadRequest,
                    $"We could not parse the JSON body of your request. ({e.Message})", e.Path);
                return true;
            default:
                LogUnhandled(logger, httpContext.Request.Method, httpContext.Request.Path, exception);
                await ApiErrors.WriteAsync(httpContext, StatusCodes.Status500InternalServerError,
                    $"The server had an error while processing your request. Request id: {httpContext.TraceIdentifier}.");
                return true;
        }
    }

    private static (string Message, string? Code) DescribeBadRequest(BadHttpRequestException exception) => exception.StatusCode switch
    {
        StatusCodes.Status413PayloadTooLarge => ("The request body is too large.", "request_too_large"),
        StatusCodes.Status415UnsupportedMediaType => ("Unsupported Content-Type: send 'application/json'.", "unsupported_media_type"),
        _ when exception.InnerException is JsonException json =>
            ($"We could not parse the JSON body of your request. ({json.Message})", null),
        _ => (exception.Message, null),
    };

    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled exception for {Method} {Path}")]
    private static partial void LogUnhandled(ILogger logger, string method, string path, Exception exception);
}
