using System.Globalization;
using System.Security.Claims;
using Gpud.Api.Auth;
using Gpud.Api.Errors;
using Gpud.Api.Lists;
using Gpud.Services.Files;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Gpud.Api.Files;

/// <summary>OpenAI's Files API: <c>/v1/files</c>.</summary>
internal static class FilesEndpoints
{
    public static RouteGroupBuilder MapFiles(this RouteGroupBuilder v1)
    {
        var files = v1.MapGroup("/files").WithTags("Files");
        files.MapPost("/", Upload)
            .Accepts<FileUploadForm>("multipart/form-data")
            .DisableAntiforgery()
            .WithName("createFile")
            .WithSummary("Upload a file (multipart: file, purpose, optional expires_after[anchor], expires_after[seconds]).")
            .Produces<ErrorResponse>(StatusCodes.Status413PayloadTooLarge)
            .Produces<ErrorResponse>(StatusCodes.Status415UnsupportedMediaType);
        files.MapGet("/", List).WithName("listFiles").WithSummary("List files, newest first by default.");
        files.MapGet("/{id}", Retrieve).WithName("retrieveFile").WithSummary("Retrieve a file object.");
        files.MapDelete("/{id}", Delete).WithName("deleteFile").WithSummary("Delete a file and its bytes.");
        files.MapGet("/{id}/content", Content).WithName("downloadFile").WithSummary("Download a file's bytes.");
        return v1;
    }

    private static async Task<Results<Ok<FileObject>, JsonHttpResult<ErrorResponse>>> Upload(
        HttpContext context, ClaimsPrincipal user, FilesService files)
    {
        using var form = await MultipartUpload.ReadAsync(context, files);
        long? seconds = null;
        if (form.ExpiresSeconds is not null)
        {
            if (!long.TryParse(form.ExpiresSeconds, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed))
                return ApiErrors.Result(400, "expires_after[seconds] must be an integer.", "expires_after[seconds]");
            seconds = parsed;
        }
        var file = files.Create(user.Project(), form.File!, form.Filename, form.Purpose, form.ExpiresAnchor, seconds);
        return TypedResults.Ok(FileObject.From(file));
    }

    private static Results<Ok<FileList>, JsonHttpResult<ErrorResponse>> List(
        ClaimsPrincipal user, FilesService files, string? purpose, string? limit, string? order, string? after)
    {
        if (!ListQuery.TryParseLimit(limit, out var take, out var error)) return error;
        var page = files.List(user.Project(), purpose, take, order, string.IsNullOrEmpty(after) ? null : after);
        var data = page.Items.Select(FileObject.From).ToList();
        return TypedResults.Ok(new FileList("list", data, data.FirstOrDefault()?.Id, data.LastOrDefault()?.Id, page.HasMore));
    }

    private static Ok<FileObject> Retrieve(ClaimsPrincipal user, FilesService files, string id) =>
        TypedResults.Ok(FileObject.From(files.Get(user.Project(), id)));

    private static Ok<FileDeleted> Delete(ClaimsPrincipal user, FilesService files, string id)
    {
        files.Delete(user.Project(), id);
        return TypedResults.Ok(new FileDeleted(id, "file", true));
    }

    private static FileStreamHttpResult Content(ClaimsPrincipal user, FilesService files, string id)
    {
        var (_, content) = files.OpenContent(user.Project(), id);
        return TypedResults.File(content, "application/octet-stream");
    }
}
