using Gpud.Services.Errors;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Options;

namespace Gpud.Api.Errors;

/// <summary>Builds OpenAI-style errors for endpoints (as typed results) and for middleware (written directly).</summary>
public static class ApiErrors
{
    public const string InvalidRequest = "invalid_request_error";
    public const string ServerError = "server_error";

    public static JsonHttpResult<ErrorResponse> Result(int status, string message, string? param = null, string? code = null) =>
        TypedResults.Json(Envelope(status, message, param, code), statusCode: status);

    public static JsonHttpResult<ErrorResponse> FromException(GpudException exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        return Result(StatusFor(exception.Kind), exception.Message, exception.Param, exception.Code);
    }

    /// <summary>Seconds a client should wait before retrying a 429 (the SDKs honour it).</summary>
    public const string RetryAfterSeconds = "1";

    public static ErrorResponse Envelope(int status, string message, string? param = null, string? code = null) =>
        new(new ErrorBody(message, status >= 500 ? ServerError : InvalidRequest, param, code));

    public static int StatusFor(ErrorKind kind) => kind switch
    {
        ErrorKind.InvalidRequest => StatusCodes.Status400BadRequest,
        ErrorKind.NotFound => StatusCodes.Status404NotFound,
        ErrorKind.PayloadTooLarge => StatusCodes.Status413PayloadTooLarge,
        ErrorKind.TooManyRequests => StatusCodes.Status429TooManyRequests,
        _ => StatusCodes.Status500InternalServerError,
    };

    /// <summary>Writes the envelope from middleware (auth challenges, status pages, the exception handler).</summary>
    public static Task WriteAsync(HttpContext context, int status, string message, string? param = null, string? code = null)
    {
        ArgumentNullException.ThrowIfNull(context);
        var json = context.RequestServices.GetRequiredService<IOptions<JsonOptions>>().Value.SerializerOptions;
        context.Response.StatusCode = status;
        context.Response.Headers.CacheControl = "no-store";
        return context.Response.WriteAsJsonAsync(Envelope(status, message, param, code), json, "application/json", context.RequestAborted);
    }
}
