// Making a rename durable (POSIX: a new directory entry survives a power cut only once the directory is fsync'ed).
// Used where a file is published by renaming it into place and later steps depend on it (the backup manifest).
using System.Runtime.InteropServices;

namespace VDisk.Engine.Storage;

/// <summary>Durability of directory entries.</summary>
internal static partial class HostFileSync
{
    private const int OpenReadOnlyCloseOnExec = 0x80000; // O_RDONLY | O_CLOEXEC (the same on x86-64 and arm64)

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    /// <summary>Flushes <paramref name="folder"/>'s entries (renames and new files in it) to disk; a no-op off Linux.</summary>
    public static void Directory(string folder)
    {
        if (!LinuxFileApi.IsAvailable) return;
        int fd = Open(folder, OpenReadOnlyCloseOnExec);
        if (fd < 0) throw new IOException($"{folder}: cannot open the folder to flush it (errno {Marshal.GetLastPInvokeError()}).");
        try
        {
            if (Fsync(fd) != 0) throw new IOException($"{folder}: flushing the folder failed (errno {Marshal.GetLastPInvokeError()}).");
        }
        finally
        {
            Close(fd);
        }
    }
}
