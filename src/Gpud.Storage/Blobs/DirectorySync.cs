using System.Runtime.InteropServices;

namespace Gpud.Storage.Blobs;

/// <summary>
/// fsync on a directory, so a rename inside it survives power loss. .NET cannot open a directory as a file handle
/// on Linux, hence the direct libc calls.
/// </summary>
internal static partial class DirectorySync
{
    private const int ORdOnly = 0;
    private const int ODirectory = 0x10000;

    public static void Fsync(string directory)
    {
        if (!OperatingSystem.IsLinux()) return;
        var fd = Open(directory, ORdOnly | ODirectory);
        if (fd < 0) throw new IOException($"Cannot open directory {directory} to fsync it (errno {Marshal.GetLastPInvokeError()}).");
        try
        {
            if (FsyncFd(fd) != 0)
                throw new IOException($"fsync of directory {directory} failed (errno {Marshal.GetLastPInvokeError()}).");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int FsyncFd(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
