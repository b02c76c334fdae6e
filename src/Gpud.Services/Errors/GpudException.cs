namespace Gpud.Services.Errors;

/// <summary>What kind of failure a service reports; the API maps it to a status code and an OpenAI error type.</summary>
public enum ErrorKind
{
    InvalidRequest,
    NotFound,
    PayloadTooLarge,

    /// <summary>Busy: 429 with Retry-After (the SDKs retry it).</summary>
    TooManyRequests,
}

/// <summary>A failure meant for the caller: its message, <see cref="Param"/> and <see cref="Code"/> reach the client.</summary>
public sealed class GpudException(ErrorKind kind, string message, string? param = null, string? code = null)
    : Exception(message)
{
    public ErrorKind Kind { get; } = kind;

    public string? Param { get; } = param;

    public string? Code { get; } = code;

    public static GpudException Invalid(string message, string? param, string? code = null) =>
        new(ErrorKind.InvalidRequest, message, param, code);

    public static GpudException NotFound(string message, string? param = "id", string? code = null) =>
        new(ErrorKind.NotFound, message, param, code);
}
