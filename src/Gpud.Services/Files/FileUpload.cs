using Gpud.Engine.Data;
using Gpud.Storage.Blobs;

namespace Gpud.Services.Files;

/// <summary>
/// Uploaded bytes on disk, not yet a file anyone can see, with the JSONL inspection made while they streamed in.
/// Disposing it without <see cref="FilesService.Create"/> discards the bytes.
/// </summary>
public sealed class FileUpload : IDisposable
{
    internal FileUpload(StagedBlob blob, TrainingDataInspection inspection)
    {
        Blob = blob;
        Inspection = inspection;
    }

    internal StagedBlob Blob { get; }

    internal TrainingDataInspection Inspection { get; }

    public long Length => Blob.Length;

    public void Dispose() => Blob.Dispose();
}
