namespace Gpud.Storage.Files;

/// <summary>A stored file's row. <see cref="BlobKey"/> locates its bytes in the blob store.</summary>
public sealed record FileRecord(
    string Id,
    string Project,
    string Filename,
    string Purpose,
    long Bytes,
    string Sha256,
    long CreatedAt,
    long? ExpiresAt,
    string Status,
    string? StatusDetails,
    string? DataFormat,
    int? ExampleCount)
{
    public string BlobKey => BlobKeyFor(Id);

    public static string BlobKeyFor(string id) => $"files/{id}";
}

