using Gpud.Storage.Files;

namespace Gpud.Api.Files;

/// <summary>OpenAI's File object.</summary>
public sealed record FileObject(
    string Id,
    string Object,
    long Bytes,
    long CreatedAt,
    long? ExpiresAt,
    string Filename,
    string Purpose,
    string Status,
    string? StatusDetails)
{
    public static FileObject From(FileRecord file)
    {
        ArgumentNullException.ThrowIfNull(file);
        return new(file.Id, "file", file.Bytes, file.CreatedAt, file.ExpiresAt, file.Filename, file.Purpose, file.Status, file.StatusDetails);
    }
}

/// <summary>A page of files: <c>after=last_id</c> fetches the next one while <c>has_more</c> is true.</summary>
public sealed record FileList(string Object, IReadOnlyList<FileObject> Data, string? FirstId, string? LastId, bool HasMore);

public sealed record FileDeleted(string Id, string Object, bool Deleted);

/// <summary>The multipart form of <c>POST /v1/files</c>, for the OpenAPI document (the endpoint streams it by hand).</summary>
public sealed class FileUploadForm
{
    /// <summary>The file's bytes; keep its original name in the part's filename.</summary>
    public required IFormFile File { get; init; }

    /// <summary><c>fine-tune</c>, <c>batch</c>, <c>user_data</c>, <c>assistants</c>, <c>vision</c> or <c>evals</c>.</summary>
    public required string Purpose { get; init; }
}
