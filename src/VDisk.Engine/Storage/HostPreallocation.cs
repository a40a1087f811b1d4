// Preallocation on a host file (qemu-img's preallocation=falloc; QEMU block/file-posix.c handle_aiocb_truncate
// calls posix_fallocate). fallocate reserves the blocks; a full file system is an error (ENOSPC), never a quiet
// sparse file. Where the file system has no fallocate (EOPNOTSUPP: ramfs, ext4 files without extents, some network
// and FUSE file systems) the space is reserved the way glibc's posix_fallocate does it, by writing into each block,
// and the operation's caller is warned once per file that this took the slow path.
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using VDisk.Engine.Core;

namespace VDisk.Engine.Storage;

internal static class HostPreallocation
{
    /// <summary>
    /// Reserves <paramref name="length"/> bytes at <paramref name="offset"/> of the file <paramref name="name"/>,
    /// extending it when the range ends past it. <paramref name="fallocateUnsupported"/> remembers, per file, that the
    /// file system refused fallocate, so later ranges go straight to the fallback. Throws an IOException giving the
    /// reason (such as "No space left on device") when the space cannot be reserved; callers name the image.
    /// </summary>
    public static void Reserve(SafeFileHandle handle, string name, long offset, long length, ref bool fallocateUnsupported)
    {
        int error = fallocateUnsupported ? LinuxFileApi.EOPNOTSUPP : LinuxFileApi.Preallocate(handle, offset, length);
        if (error == LinuxFileApi.EOPNOTSUPP)
        {
            if (!fallocateUnsupported)
                OperationWarnings.Add($"The file system of '{Path.GetDirectoryName(name)}' does not support fallocate: the space was reserved by writing zeroes instead, as qemu-img does (slower).");
            fallocateUnsupported = true;
            error = LinuxFileApi.PosixFallocate(handle, offset, length);
        }
        if (error != 0)
            throw new IOException($"could not reserve {length} bytes for preallocation: {Marshal.GetPInvokeErrorMessage(error)}", error);
    }
}
