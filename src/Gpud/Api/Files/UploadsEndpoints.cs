using System.Security.Claims;
using System.Text.Json;
using Gpud.Api.Auth;
using Gpud.Api.Errors;
using Gpud.Services.Errors;
using Gpud.Services.Files;
using Gpud.Storage.Files;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Gpud.Api.Files;

/// <summary>OpenAI's Uploads API: <c>/v1/uploads</c>, a file sent in parts of up to 64 MB, then completed.</summary>
internal static class UploadsEndpoints
{
    public static RouteGroupBuilder MapUploads(this RouteGroupBuilder v1)
    {
        var uploads = v1.MapGroup("/uploads").WithTags("Uploads");
        uploads.MapPost("/", Create).Accepts<CreateUploadRequest>("application/json")
            .WithName("createUpload").WithSummary("Start an upload: the file's name, purpose, size and MIME type; parts may then be added for an hour.");
        uploads.MapPost("/{upload_id}/parts", AddPart).Accepts<UploadPartForm>("multipart/form-data").DisableAntiforgery()
            .Produces<ErrorResponse>(StatusCodes.Status413PayloadTooLarge)
            .WithName("addUploadPart").WithSummary("Add a part (multipart field data, at most 64 MB); parts may arrive in any order, in parallel.");
        uploads.MapPost("/{upload_id}/complete", Complete).Accepts<CompleteUploadRequest>("application/json")
            .WithName("completeUpload").WithSummary("Join the parts, in the order given, into a file (checked as an upload is); the upload then holds it.");
        uploads.MapPost("/{upload_id}/cancel", Cancel)
            .WithName("cancelUpload").WithSummary("Cancel a pending upload; its parts are deleted.");
        return v1;
    }

    private static Ok<UploadObject> Create(JsonElement body, ClaimsPrincipal user, UploadsService uploads) =>
        TypedResults.Ok(UploadObject.From(uploads.Create(user.Project(), body), null));

    private static async Task<Ok<UploadPartObject>> AddPart(string upload_id, HttpContext context, ClaimsPrincipal user, UploadsService uploads)
    {
        var part = await MultipartUpload.ReadPartAsync(context, UploadsService.MaxPartBytes,
            () => new GpudException(ErrorKind.PayloadTooLarge, $"A part may hold at most {UploadsService.MaxPartBytes} bytes (64 MB).", "data", "file_too_large"),
            (data, cancellationToken) => uploads.AddPartAsync(user.Project(), upload_id, data, cancellationToken));
        return TypedResults.Ok(new UploadPartObject(part.Id, "upload.part", part.CreatedAt, part.UploadId));
    }

    private static async Task<Ok<UploadObject>> Complete(string upload_id, JsonElement body, ClaimsPrincipal user, UploadsService uploads, HttpContext context)
    {
        var (upload, file) = await uploads.CompleteAsync(user.Project(), upload_id, body, context.RequestAborted);
        return TypedResults.Ok(UploadObject.From(upload, file));
    }

    private static Ok<UploadObject> Cancel(string upload_id, ClaimsPrincipal user, UploadsService uploads) =>
        TypedResults.Ok(UploadObject.From(uploads.Cancel(user.Project(), upload_id), null));
}

/// <summary><c>upload</c>: <c>status</c> pending, completed (<c>file</c> is the file it became), cancelled or expired.</summary>
public sealed record UploadObject(string Id, string Object, long Bytes, long CreatedAt, string Filename, string Purpose, string Status, long ExpiresAt,
    FileObject? File)
{
    public static UploadObject From(UploadRecord upload, FileRecord? file)
    {
        ArgumentNullException.ThrowIfNull(upload);
        return new UploadObject(upload.Id, "upload", upload.Bytes, upload.CreatedAt, upload.Filename, upload.Purpose, upload.Status, upload.ExpiresAt,
            file is null ? null : FileObject.From(file));
    }
}

/// <summary><c>upload.part</c></summary>
public sealed record UploadPartObject(string Id, string Object, long CreatedAt, string UploadId);

/// <summary>Documents the request body in the OpenAPI spec; the endpoint reads the JSON itself (field-by-field 400s).</summary>
/// <param name="Filename">The name the completed file gets.</param>
/// <param name="Purpose">As for <c>POST /v1/files</c> (<c>fine-tune</c>, <c>batch</c>, …).</param>
/// <param name="MimeType">The file's MIME type (<c>application/jsonl</c> for training data).</param>
/// <param name="Bytes">The file's size; the parts must add up to it (at most Gpud:MaxUploadBytes).</param>
/// <param name="ExpiresAfter">When the completed file expires: <c>{"anchor": "created_at", "seconds": 3600..2592000}</c>.</param>
public sealed record CreateUploadRequest(string Filename, string Purpose, long Bytes, string MimeType, object? ExpiresAfter);

/// <param name="PartIds">The parts in the file's order.</param>
/// <param name="Md5">The file's MD5 (hex), checked against the joined parts.</param>
public sealed record CompleteUploadRequest(IReadOnlyList<string> PartIds, string? Md5);

/// <summary>Documents the part upload's form: the part's bytes in <c>data</c>.</summary>
public sealed record UploadPartForm(IFormFile Data);
