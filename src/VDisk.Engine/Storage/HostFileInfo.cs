// What a path is on the host, from stat(2), which .NET does not expose: a regular file, a block or character
// device, a FIFO, a socket or a folder, and its identity (device and inode number), so that two names of one
// file (a symbolic or a hard link) are recognised as the same file. Linux x64/arm64; elsewhere only "exists or
// not" is known and callers compare paths instead.
using System.Runtime.InteropServices;

namespace VDisk.Engine.Storage;

/// <summary>The kind of file a path names (after following symbolic links).</summary>
public enum HostFileType
{
    /// <summary>Nothing exists at the path (or a symbolic link there points nowhere, or into a loop).</summary>
    Missing,
    /// <summary>A regular file.</summary>
    Regular,
    /// <summary>A folder.</summary>
    Directory,
    /// <summary>A block device (a disk, partition, LVM volume or loop device).</summary>
    BlockDevice,
    /// <summary>A character device (a terminal, /dev/null, a tape).</summary>
    CharacterDevice,
    /// <summary>A named pipe.</summary>
    Fifo,
    /// <summary>A Unix domain socket.</summary>
    Socket,
    /// <summary>Something exists, but the host cannot say what (not Linux, or stat failed for another reason).</summary>
    Unknown,
}

/// <summary>The type and identity of the file a path names, following symbolic links.</summary>
/// <param name="Type">What the path names.</param>
/// <param name="Device">The device number of the file system holding it (st_dev); 0 when unknown.</param>
/// <param name="Inode">Its inode number (st_ino); 0 when unknown.</param>
public readonly partial record struct HostFileInfo(HostFileType Type, ulong Device, ulong Inode)
{
    private const int StatBufferBytes = 256;
    private const uint TypeMask = 0xf000;
    private const int ENOENT = 2, ENOTDIR = 20, ENAMETOOLONG = 36, ELOOP = 40;

    [LibraryImport("libc", EntryPoint = "stat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Stat(string path, byte* statBuffer);

    /// <summary>True when the file exists and its identity is known.</summary>
    public bool HasIdentity => Type is not (HostFileType.Missing or HostFileType.Unknown);

    /// <summary>What <paramref name="path"/> names, following symbolic links.</summary>
    public static unsafe HostFileInfo Of(string path)
    {
        if (!LinuxFileApi.IsAvailable || path.Contains('\0'))
            return File.Exists(path) || Directory.Exists(path) ? new(HostFileType.Unknown, 0, 0) : new(HostFileType.Missing, 0, 0);
        byte* buffer = stackalloc byte[StatBufferBytes];
        if (Stat(path, buffer) != 0)
        {
            int error = Marshal.GetLastPInvokeError();
            return new(error is ENOENT or ENOTDIR or ENAMETOOLONG or ELOOP ? HostFileType.Missing : HostFileType.Unknown, 0, 0);
        }
        // struct stat: st_dev at 0 and st_ino at 8 on both ABIs; st_mode at 24 (x86_64) or 16 (aarch64).
        int modeOffset = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 24 : 16;
        uint mode = *(uint*)(buffer + modeOffset);
        return new(TypeOf(mode), *(ulong*)buffer, *(ulong*)(buffer + 8));
    }

    /// <summary>
    /// True when <paramref name="a"/> and <paramref name="b"/> name the same file: the same full path, or (on Linux)
    /// the same device and inode, as with a symbolic or hard link to it.
    /// </summary>
    public static bool SameFile(string a, string b)
    {
        a = Path.GetFullPath(a);
        b = Path.GetFullPath(b);
        if (string.Equals(a, b, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal)) return true;
        var first = Of(a);
        if (!first.HasIdentity) return false;
        var second = Of(b);
        return second.HasIdentity && first.Device == second.Device && first.Inode == second.Inode;
    }

    private static HostFileType TypeOf(uint mode) => (mode & TypeMask) switch
    {
        0x8000 => HostFileType.Regular,
        0x4000 => HostFileType.Directory,
        0x6000 => HostFileType.BlockDevice,
        0x2000 => HostFileType.CharacterDevice,
        0x1000 => HostFileType.Fifo,
        0xc000 => HostFileType.Socket,
        _ => HostFileType.Unknown,
    };
}
