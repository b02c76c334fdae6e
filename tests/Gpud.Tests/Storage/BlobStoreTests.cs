using System.Security.Cryptography;
using Gpud.Storage.Blobs;
using Gpud.Tests.Infrastructure;

namespace Gpud.Tests.Storage;

public sealed class BlobStoreTests
{
    [Fact]
    public async Task A_committed_blob_has_the_bytes_and_hash_that_were_streamed()
    {
        using var dir = new TempDir();
        var store = new BlobStore(dir.Path);
        var bytes = RandomNumberGenerator.GetBytes(300_000);

        using var staged = await store.StageAsync(new MemoryStream(bytes), 1_000_000, null, default);
        Assert.False(store.Exists("files/x"));
        store.Commit(staged, "files/x");

        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), staged.Sha256);
        await using var read = store.OpenRead("files/x");
        var copy = new MemoryStream();
        await read.CopyToAsync(copy);
        Assert.Equal(bytes, copy.ToArray());
        Assert.Empty(Directory.EnumerateFiles(dir["tmp"]));
    }

    [Fact]
    public async Task A_discarded_or_oversized_upload_leaves_no_file_behind()
    {
        using var dir = new TempDir();
        var store = new BlobStore(dir.Path);

        (await store.StageAsync(new MemoryStream(new byte[10]), 100, null, default)).Dispose();
        await Assert.ThrowsAsync<BlobTooLargeException>(() => store.StageAsync(new MemoryStream(new byte[101]), 100, null, default));

        Assert.Empty(Directory.EnumerateFiles(dir.Path, "*", SearchOption.AllDirectories));
    }

    [Fact]
    public void Keys_that_could_escape_the_blob_directory_are_rejected()
    {
        using var dir = new TempDir();
        var store = new BlobStore(dir.Path);
        Assert.Throws<ArgumentException>(() => store.OpenRead("../gpud.db"));
        Assert.Throws<ArgumentException>(() => store.OpenRead("/etc/passwd"));
    }
}
