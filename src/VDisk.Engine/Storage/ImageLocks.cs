// Image locking that QEMU sees (QEMU block/file-posix.c, "lock bytes"): open-file-description (OFD) read
// locks on byte 100+i for each permission held and on byte 200+i for each permission not shared with
// others. A running VM writing an image holds "write" and unshares it, so VDisk refuses to read it for a
// conversion, or to write it, with the same conflict qemu-img reports; and qemu sees VDisk's locks in turn.
// .NET's FileShare uses flock(), which QEMU's fcntl locks never see.
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using VDisk.Engine.Core;

namespace VDisk.Engine.Storage;

/// <summary>How an image file is locked against other processes.</summary>
public enum ImageLockMode
{
    /// <summary>No locks, no checks (qemu-img's -U / force-share): for read-only inspection.</summary>
    None,
    /// <summary>Consistent reads: nobody else may write while the file is open.</summary>
    Read,
    /// <summary>Writing: nobody else may write, resize or read consistently while the file is open.</summary>
    Write,
}

internal static partial class ImageLocks
{
    private const int PermissionBase = 100, SharedBase = 200;
    private const int ConsistentRead = 0x1, WritePermission = 0x2, Resize = 0x8, AllPermissions = 0xf; // 0x4 is "write unchanged"
    private const int GetLock = 36, SetLock = 37; // F_OFD_GETLK, F_OFD_SETLK
    private const short ReadLock = 0, WriteLock = 1, Unlocked = 2;
    private static readonly string[] PermissionNames = { "consistent read", "write", "write unchanged", "resize" };

    [StructLayout(LayoutKind.Sequential)]
    private struct FileLock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(SafeFileHandle fd, int command, ref FileLock fileLock);

    /// <summary>
    /// Checks for conflicting holders and takes QEMU-compatible locks for <paramref name="mode"/>. Throws a
    /// <see cref="VDiskErrorKind.InUse"/> error naming the permission when another process (a VM) conflicts.
    /// No-op where OFD locks do not exist, or where the filesystem refuses them.
    /// </summary>
    public static void Acquire(SafeFileHandle handle, string path, ImageLockMode mode)
    {
        if (mode == ImageLockMode.None || !LinuxFileApi.IsAvailable) return;
        int held = mode == ImageLockMode.Write ? ConsistentRead | WritePermission | Resize : ConsistentRead;
        int shared = mode == ImageLockMode.Write ? AllPermissions & ~(WritePermission | Resize) : AllPermissions & ~WritePermission;
        // A lock can outlive its file's close by a moment: a child process forked meanwhile (by any thread of this
        // process) shares the open file description until it execs. A VM holds its locks for good, so a conflict
        // that lasts through a few short retries is real.
        for (int attempt = 0; Conflict(handle, held, shared) is { } conflict; attempt++)
        {
            if (attempt == ConflictRetries) throw InUse(path, conflict);
            Thread.Sleep(ConflictRetryDelay);
        }
        for (int bit = 0; bit < PermissionNames.Length; bit++)
        {
            if ((held & (1 << bit)) != 0) Lock(handle, PermissionBase + bit);
            if ((shared & (1 << bit)) == 0) Lock(handle, SharedBase + bit);
        }
    }

    private const int ConflictRetries = 10;
    private static readonly TimeSpan ConflictRetryDelay = TimeSpan.FromMilliseconds(25);

    // What another open file description holds that conflicts with holding `held` and sharing only `shared`, or null.
    private static string? Conflict(SafeFileHandle handle, int held, int shared)
    {
        for (int bit = 0; bit < PermissionNames.Length; bit++)
        {
            if ((held & (1 << bit)) != 0 && HeldByOthers(handle, SharedBase + bit) is true)
                return $"another process does not allow \"{PermissionNames[bit]}\"";
            if ((shared & (1 << bit)) == 0 && HeldByOthers(handle, PermissionBase + bit) is true)
                return $"another process holds \"{PermissionNames[bit]}\"";
        }
        return null;
    }

    // True when some other open file description holds a lock on the byte; null when the host cannot tell.
    private static bool? HeldByOthers(SafeFileHandle handle, long offset)
    {
        var probe = new FileLock { Type = WriteLock, Whence = 0, Start = offset, Length = 1 };
        if (Fcntl(handle, GetLock, ref probe) != 0) return null;
        return probe.Type != Unlocked;
    }

    private static void Lock(SafeFileHandle handle, long offset)
    {
        var fileLock = new FileLock { Type = ReadLock, Whence = 0, Start = offset, Length = 1 };
        Fcntl(handle, SetLock, ref fileLock); // best effort, like QEMU on filesystems without OFD locks
    }

    private static VDiskException InUse(string path, string why) => new(VDiskErrorKind.InUse, path,
        $"{path} is in use: {why} (is a virtual machine running on it?). Stop it first; read-only inspection (Get-VDisk) still works.");
}
