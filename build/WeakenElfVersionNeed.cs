// MSBuild inline task (RoslynCodeTaskFactory). Why it exists: libLibTorchSharp.so from TorchSharp 0.107 declares a
// dependency on GLIBCXX_3.4.32, which Debian 12's libstdc++ (3.4.30) lacks, so the dynamic linker refuses to load it
// and TorchSharp reports a misleading "doesn't reference libtorch-cpu" error. The only symbol bound to that version is
// std::ios_base_library_init(), which is referenced but never called. Marking the version requirement weak
// (VER_FLG_WEAK in its Vernaux entry) lets glibc load the library when the version is absent and changes nothing
// where it exists. The patch is applied to the copies in the build/publish output, never to the NuGet cache.
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public sealed class WeakenElfVersionNeed : Task
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    [Required] public ITaskItem[] Files { get; set; } = Array.Empty<ITaskItem>();

    [Required] public string Version { get; set; } = "";

    public override bool Execute()
    {
        foreach (var item in Files)
        {
            var path = item.GetMetadata("FullPath");
            try
            {
                var bytes = File.ReadAllBytes(path);
                var changed = Weaken(bytes, Version);
                if (changed < 0)
                {
                    Log.LogMessage(MessageImportance.Low, "{0}: no {1} requirement, left as is", path, Version);
                    continue;
                }
                if (changed == 0)
                {
                    Log.LogMessage(MessageImportance.Low, "{0}: {1} already weak", path, Version);
                    continue;
                }
                // Write a new file and rename it over the old one: the output copy may be a hard link into the
                // NuGet cache, which must stay untouched.
                var temp = path + ".weakening";
                File.WriteAllBytes(temp, bytes);
                File.Replace(temp, path, null);
                Log.LogMessage(MessageImportance.Normal, "{0}: marked {1} weak", path, Version);
            }
            catch (Exception e) when (e is IOException || e is InvalidDataException || e is UnauthorizedAccessException)
            {
                Log.LogError("Could not patch {0}: {1}", path, e.Message);
            }
        }
        return !Log.HasLoggedErrors;
    }

    /// <returns>-1 if the version is not required, 0 if already weak, 1 if patched in <paramref name="elf"/>.</returns>
    public static int Weaken(byte[] elf, string version)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("only 64-bit little-endian ELF is supported");

        var shoff = (long)BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3a);
        int shnum = BitConverter.ToUInt16(elf, 0x3c);
        for (var i = 0; i < shnum; i++)
        {
            var sh = checked((int)(shoff + (long)i * shentsize));
            if (BitConverter.ToUInt32(elf, sh + 4) != ShtGnuVerneed) continue;

            var offset = checked((int)BitConverter.ToUInt64(elf, sh + 0x18));
            var link = (int)BitConverter.ToUInt32(elf, sh + 0x28);
            var count = (int)BitConverter.ToUInt32(elf, sh + 0x2c);
            var strtab = checked((int)BitConverter.ToUInt64(elf, checked((int)(shoff + (long)link * shentsize)) + 0x18));

            var need = offset;
            for (var n = 0; n < count; n++)
            {
                int auxCount = BitConverter.ToUInt16(elf, need + 2);
                var aux = need + (int)BitConverter.ToUInt32(elf, need + 8);
                for (var a = 0; a < auxCount; a++)
                {
                    var name = ReadCString(elf, strtab + (int)BitConverter.ToUInt32(elf, aux + 8));
                    if (name == version)
                    {
                        var flags = BitConverter.ToUInt16(elf, aux + 4);
                        if ((flags & VerFlgWeak) != 0) return 0;
                        flags |= VerFlgWeak;
                        elf[aux + 4] = (byte)(flags & 0xff);
                        elf[aux + 5] = (byte)(flags >> 8);
                        return 1;
                    }
                    aux += (int)BitConverter.ToUInt32(elf, aux + 12);
                }
                need += (int)BitConverter.ToUInt32(elf, need + 12);
            }
        }
        return -1;
    }

    private static string ReadCString(byte[] data, int start)
    {
        var end = start;
        while (end < data.Length && data[end] != 0) end++;
        return Encoding.ASCII.GetString(data, start, end - start);
    }
}
