using System.Runtime.InteropServices;

namespace Gpud.Engine.IO;

/// <summary>
/// Writes a directory of files so that readers see the old directory or the complete new one, never a half-written
/// one: the files go to a sibling temporary directory which is then renamed into place (a crash leaves only the
/// temporary directory, which the next write replaces). Files and both directories are fsynced, so the new directory
/// also survives a power cut once <see cref="Write"/> returns.
/// </summary>
public static partial class AtomicDirectory
{
    public static void Write(string directory, Action<string> writeFiles)
    {
        ArgumentNullException.ThrowIfNull(writeFiles);
        var full = Path.GetFullPath(directory);
        var parent = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(parent);
        var temp = Path.Combine(parent, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        Directory.CreateDirectory(temp);
        try
        {
            writeFiles(temp);
            foreach (var file in Directory.EnumerateFiles(temp, "*", SearchOption.AllDirectories))
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
                stream.Flush(flushToDisk: true);
            }
            SyncDirectory(temp);
            if (Directory.Exists(full)) Directory.Delete(full, recursive: true);
            Directory.Move(temp, full);
            SyncDirectory(parent);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }

    private static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux()) return;
        var fd = Open(directory, 0x10000 /* O_RDONLY | O_DIRECTORY */);
        if (fd < 0) throw new IOException($"Cannot open directory {directory} to fsync it (errno {Marshal.GetLastPInvokeError()}).");
        try
        {
            if (Fsync(fd) != 0) throw new IOException($"fsync of directory {directory} failed (errno {Marshal.GetLastPInvokeError()}).");
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);
}
