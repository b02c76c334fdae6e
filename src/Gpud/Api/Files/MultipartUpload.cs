using System.Text;
using Gpud.Api.Errors;
using Gpud.Services.Errors;
using Gpud.Services.Files;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace Gpud.Api.Files;

/// <summary>
/// Reads <c>POST /v1/files</c>'s multipart body section by section, streaming the file part straight into the
/// files service: the upload never sits whole in memory, and ASP.NET's form buffering (a second copy on disk) is
/// bypassed. Field order is free: the SDKs send <c>file</c> before <c>purpose</c>.
/// </summary>
internal sealed class MultipartUpload : IDisposable
{
    /// <summary>Room for multipart boundaries and the small fields around the file.</summary>
    private const long FormOverheadBytes = 1024 * 1024;
    private const int MaxFieldChars = 1024;

    private MultipartUpload()
    {
    }

    public FileUpload? File { get; private set; }
    public string? Filename { get; private set; }
    public string? Purpose { get; private set; }
    public string? ExpiresAnchor { get; private set; }
    public string? ExpiresSeconds { get; private set; }

    public static async Task<MultipartUpload> ReadAsync(HttpContext context, FilesService files)
    {
        ArgumentNullException.ThrowIfNull(files);
        var reader = Open(context, files.MaxUploadBytes, files.TooLarge);
        var upload = new MultipartUpload();
        try
        {
            while (await reader.ReadNextSectionAsync(context.RequestAborted) is { } section)
            {
                if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition)
                    || !disposition.DispositionType.Equals("form-data", StringComparison.OrdinalIgnoreCase))
                {
                    await section.Body.CopyToAsync(Stream.Null, context.RequestAborted);
                    continue;
                }
                var name = HeaderUtilities.RemoveQuotes(disposition.Name).Value;
                switch (name)
                {
                    case "file":
                        if (upload.File is not null) throw GpudException.Invalid("Only one 'file' part is allowed.", "file");
                        upload.Filename = disposition.FileNameStar.HasValue
                            ? disposition.FileNameStar.Value
                            : HeaderUtilities.RemoveQuotes(disposition.FileName).Value;
                        upload.File = await files.StageAsync(section.Body, context.RequestAborted);
                        break;
                    case "purpose":
                        upload.Purpose = await ReadFieldAsync(section, name, context.RequestAborted);
                        break;
                    case "expires_after[anchor]":
                        upload.ExpiresAnchor = await ReadFieldAsync(section, name, context.RequestAborted);
                        break;
                    case "expires_after[seconds]":
                        upload.ExpiresSeconds = await ReadFieldAsync(section, name, context.RequestAborted);
                        break;
                    default:
                        await section.Body.CopyToAsync(Stream.Null, context.RequestAborted);
                        break;
                }
            }
            if (upload.File is null) throw GpudException.Invalid("Missing required parameter: 'file'.", "file");
            return upload;
        }
        catch (Exception e) when (IsMalformedMultipart(e) && !context.RequestAborted.IsCancellationRequested)
        {
            upload.Dispose();
            throw GpudException.Invalid($"The multipart body is malformed: {e.Message}", null);
        }
        catch
        {
            upload.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Reads an Uploads API part: the <c>data</c> field's bytes go to <paramref name="stage"/> as they arrive (other
    /// fields are skipped); a body without one is a 400.
    /// </summary>
    public static async Task<T> ReadPartAsync<T>(HttpContext context, long maxBytes, Func<GpudException> tooLarge, Func<Stream, CancellationToken, Task<T>> stage)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(stage);
        var reader = Open(context, maxBytes, tooLarge);
        try
        {
            T? staged = null;
            while (await reader.ReadNextSectionAsync(context.RequestAborted) is { } section)
            {
                if (staged is null && ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition)
                    && HeaderUtilities.RemoveQuotes(disposition.Name).Value == "data")
                    staged = await stage(section.Body, context.RequestAborted);
                else
                    await section.Body.CopyToAsync(Stream.Null, context.RequestAborted);
            }
            return staged ?? throw GpudException.Invalid("Missing required parameter: 'data'.", "data", "missing_required_parameter");
        }
        catch (Exception e) when (IsMalformedMultipart(e) && !context.RequestAborted.IsCancellationRequested)
        {
            throw GpudException.Invalid($"The multipart body is malformed: {e.Message}", null);
        }
    }

    /// <summary>A reader over a multipart/form-data body of at most <paramref name="maxBytes"/> plus the form's overhead.</summary>
    private static MultipartReader Open(HttpContext context, long maxBytes, Func<GpudException> tooLarge)
    {
        var request = context.Request;
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var mediaType)
            || !"multipart/form-data".Equals(mediaType.MediaType.Value, StringComparison.OrdinalIgnoreCase))
            throw new UnsupportedMediaTypeException(request.ContentType);
        var boundary = HeaderUtilities.RemoveQuotes(mediaType.Boundary).Value;
        if (string.IsNullOrEmpty(boundary))
            throw GpudException.Invalid("The multipart Content-Type has no boundary.", null);
        var limit = maxBytes + FormOverheadBytes;
        if (request.ContentLength > limit) throw tooLarge(); // refuse before reading a byte
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } bodySize)
            bodySize.MaxRequestBodySize = limit;
        return new MultipartReader(boundary, request.Body) { BodyLengthLimit = null };
    }

    public void Dispose() => File?.Dispose();

    // MultipartReader reports a broken body as InvalidDataException (bad boundary or headers) or as a plain
    // IOException when the body ends before the closing boundary.
    private static bool IsMalformedMultipart(Exception e) =>
        e is InvalidDataException
        || e.GetType() == typeof(IOException) && e.Message.StartsWith("Unexpected end of Stream", StringComparison.Ordinal);

    private static async Task<string> ReadFieldAsync(MultipartSection section, string name, CancellationToken cancellationToken)
    {
        using var reader = new StreamReader(section.Body, Encoding.UTF8);
        var buffer = new char[MaxFieldChars + 1];
        var length = await reader.ReadBlockAsync(buffer.AsMemory(), cancellationToken);
        if (length > MaxFieldChars) throw GpudException.Invalid($"'{name}' is too long.", name);
        return new string(buffer, 0, length);
    }
}

/// <summary>The request's Content-Type is not one the endpoint reads.</summary>
internal sealed class UnsupportedMediaTypeException(string? contentType)
    : Exception($"Unsupported Content-Type '{contentType}': upload files as multipart/form-data with 'file' and 'purpose' parts.");
