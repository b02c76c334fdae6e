namespace Gpud.Engine.IO;

/// <summary>
/// Writes a directory of files so that readers see the old directory or the complete new one, never a half-written
/// one: the files go to a sibling temporary directory which is then renamed into place (a crash leaves only the
/// temporary directory, which the next write replaces).
/// </summary>
public static class AtomicDirectory
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
            if (Directory.Exists(full)) Directory.Delete(full, recursive: true);
            Directory.Move(temp, full);
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }
}
