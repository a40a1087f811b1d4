// O_DIRECT on Linux (DESIGN.md "Storage alignment"): open with O_DIRECT and say why it failed, and name the
// file system (statfs f_type) so a refusal reads like QEMU's ("filesystem does not support O_DIRECT").
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VDisk.Engine.Storage;

internal static partial class LinuxFileApi
{
    /// <summary>errno for "this file system does not do O_DIRECT".</summary>
    public const int EINVAL = 22;

    /// <summary>The O_DIRECT open flag of this architecture.</summary>
    public static int DirectFlag => RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 0x10000 : 0x4000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "statfs", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statfs(string path, byte* buffer);

    // statfs f_type magic numbers (linux/magic.h) of the file systems images live on.
    private static readonly Dictionary<long, string> FileSystemNames = new()
    {
        [0xEF53] = "ext4", [0x58465342] = "xfs", [0x9123683E] = "btrfs", [0x01021994] = "tmpfs", [0x858458F6] = "ramfs",
        [0x794C7630] = "overlayfs", [0x6969] = "nfs", [0x2FC12FC1] = "zfs", [0x65735546] = "fuse", [0xFF534D42] = "cifs",
        [0xFE534D42] = "smb2", [0x5346544E] = "ntfs", [0x4D44] = "vfat", [0x2011BAB0] = "exfat", [0xF2F52010] = "f2fs",
        [0x73717368] = "squashfs", [0x9660] = "iso9660", [0x01161970] = "gfs2", [0x00C36400] = "ceph", [0x5A3C69F0] = "9p",
    };

    /// <summary>Opens with O_DIRECT (and O_DSYNC when <paramref name="sync"/>); null with the errno when the host refuses.</summary>
    public static SafeFileHandle? OpenDirect(string path, bool write, bool sync, out int errno) => OpenFlags(path, write, direct: true, sync, out errno);

    /// <summary>Opens an existing file with O_DIRECT and/or O_DSYNC as asked; null with the errno when the host refuses.</summary>
    public static SafeFileHandle? OpenFlags(string path, bool write, bool direct, bool sync, out int errno)
    {
        errno = 0;
        if (!IsAvailable) return null;
        const int ReadWrite = 2, CloseOnExec = 0x80000, DataSync = 0x1000;
        int flags = (write ? ReadWrite : 0) | CloseOnExec | (direct ? DirectFlag : 0) | (sync ? DataSync : 0);
        int fd = Open(path, flags, 0);
        if (fd >= 0) return new SafeFileHandle(fd, ownsHandle: true);
        errno = Marshal.GetLastPInvokeError();
        return null;
    }

    /// <summary>The name of the file system holding <paramref name="path"/> ("tmpfs", "ext4", ...), or its magic number.</summary>
    public static unsafe string FileSystemName(string path)
    {
        if (!IsAvailable) return "unknown";
        byte* buffer = stackalloc byte[256];
        if (Statfs(path, buffer) != 0) return "unknown";
        long type = *(long*)buffer; // f_type comes first on x86_64 and aarch64
        return FileSystemNames.TryGetValue(type, out var name) ? name : $"0x{type:x}";
    }
}
