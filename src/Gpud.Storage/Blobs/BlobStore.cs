using System.Buffers;
using System.Security.Cryptography;

namespace Gpud.Storage.Blobs;

/// <summary>Sees each chunk of a blob as it streams to disk (e.g. to validate JSONL in the same pass).</summary>
public delegate void BlobChunkObserver(ReadOnlySpan<byte> chunk);

/// <summary>
/// Large payloads (uploads, adapters) as plain files under <c>{root}/blobs</c>. Writes are atomic: bytes stream to
/// <c>{root}/tmp</c>, are fsynced, then renamed into place and the directory fsynced. A crash leaves at worst a
/// temporary file (swept at start-up) or an unreferenced blob (swept by its owner), never a half file under a key.
/// </summary>
public sealed class BlobStore
{
    private const int ChunkSize = 128 * 1024;
    private readonly string _blobs;
    private readonly string _temp;

    public BlobStore(string root)
    {
        Root = Path.GetFullPath(root);
        _blobs = Path.Combine(Root, "blobs");
        _temp = Path.Combine(Root, "tmp");
        // No I/O here: a data dir that cannot be used is reported by the start-up check, not by a DI constructor.
    }

    public string Root { get; }

    /// <summary>Streams <paramref name="source"/> to a temporary file, hashing it on the way.</summary>
    /// <exception cref="BlobTooLargeException">More than <paramref name="maxBytes"/> arrived; nothing is kept.</exception>
    public async Task<StagedBlob> StageAsync(Stream source, long maxBytes, BlobChunkObserver? observer, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(_temp);
        var path = Path.Combine(_temp, $"{Guid.NewGuid():N}.part");
        var staged = new StagedBlob(path);
        var buffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
        try
        {
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long length = 0;
            await using (var file = new FileStream(path, new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.Write,
                Options = FileOptions.Asynchronous,
                BufferSize = 0,
            }))
            {
                int read;
                while ((read = await source.ReadAsync(buffer.AsMemory(0, ChunkSize), cancellationToken)) > 0)
                {
                    length += read;
                    if (length > maxBytes) throw new BlobTooLargeException(maxBytes);
                    hash.AppendData(buffer, 0, read);
                    observer?.Invoke(buffer.AsSpan(0, read));
                    await file.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                }
                file.Flush(flushToDisk: true);
            }
            staged.Complete(length, Convert.ToHexStringLower(hash.GetHashAndReset()));
            return staged;
        }
        catch
        {
            staged.Dispose();
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Moves a staged blob under <paramref name="key"/>, durably. After this the blob belongs to the key.</summary>
    public void Commit(StagedBlob staged, string key)
    {
        ArgumentNullException.ThrowIfNull(staged);
        var target = PathFor(key);
        var directory = Path.GetDirectoryName(target)!;
        Directory.CreateDirectory(directory);
        staged.MoveTo(target);
        DirectorySync.Fsync(directory);
    }

    public bool Exists(string key) => File.Exists(PathFor(key));

    public long Length(string key) => new FileInfo(PathFor(key)).Length;

    public FileStream OpenRead(string key) =>
        new(PathFor(key), FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, ChunkSize, FileOptions.Asynchronous | FileOptions.SequentialScan);

    public void Delete(string key)
    {
        var path = PathFor(key);
        if (!File.Exists(path)) return;
        File.Delete(path);
        DirectorySync.Fsync(Path.GetDirectoryName(path)!);
    }

    /// <summary>Keys of every stored blob whose key starts with <paramref name="prefix"/> (e.g. <c>files/</c>).</summary>
    public IEnumerable<string> Keys(string prefix)
    {
        var directory = Path.GetDirectoryName(PathFor(prefix + "x"))!;
        if (!Directory.Exists(directory)) yield break;
        foreach (var file in Directory.EnumerateFiles(directory))
            yield return prefix + Path.GetFileName(file);
    }

    /// <summary>Deletes temporary files left by a crash mid-write. Call only before any write starts.</summary>
    public int SweepTemporaryFiles()
    {
        Directory.CreateDirectory(_temp);
        Directory.CreateDirectory(_blobs);
        var count = 0;
        foreach (var file in Directory.EnumerateFiles(_temp))
        {
            File.Delete(file);
            count++;
        }
        return count;
    }

    private string PathFor(string key)
    {
        if (string.IsNullOrEmpty(key) || key.Contains("..", StringComparison.Ordinal) || key.StartsWith('/')
            || key.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '/' or '.')))
            throw new ArgumentException($"Invalid blob key '{key}'.", nameof(key));
        return Path.Combine(_blobs, key);
    }
}

/// <summary>A fully written, fsynced temporary file not yet visible under any key. Disposing discards it.</summary>
public sealed class StagedBlob : IDisposable
{
    private string? _path;

    internal StagedBlob(string path) => _path = path;

    public long Length { get; private set; }

    public string Sha256 { get; private set; } = "";

    /// <summary>Path of the staged bytes, for a second reader before commit.</summary>
    public string TemporaryPath => _path ?? throw new InvalidOperationException("The blob was committed or discarded.");

    internal void Complete(long length, string sha256)
    {
        Length = length;
        Sha256 = sha256;
    }

    internal void MoveTo(string target)
    {
        File.Move(TemporaryPath, target, overwrite: true);
        _path = null;
    }

    public void Dispose()
    {
        if (_path is null) return;
        try
        {
            File.Delete(_path);
        }
        catch (IOException)
        {
            // Swept at the next start.
        }
        _path = null;
    }
}

public sealed class BlobTooLargeException(long maxBytes)
    : IOException($"The payload exceeds the limit of {maxBytes} bytes.")
{
    public long MaxBytes { get; } = maxBytes;
}
