// Linux system calls .NET does not expose: fallocate (preallocate, punch hole, zero range), lseek
// SEEK_DATA/SEEK_HOLE and st_blocks; O_DIRECT is in LinuxFileApi.Direct.cs. Every entry point reports
// failure instead of throwing so callers can fall back to portable code on other hosts and filesystems.
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace VDisk.Engine.Storage;

internal static partial class LinuxFileApi
{
    private const int FallocKeepSize = 0x01;
    private const int FallocPunchHole = 0x02;
    private const int FallocZeroRange = 0x10;
    private const int SeekData = 3;
    private const int SeekHole = 4;
    private const int ENXIO = 6;

    /// <summary>True on Linux x64/arm64, where the declarations below match the kernel ABI.</summary>
    public static bool IsAvailable { get; } = OperatingSystem.IsLinux()
        && RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64;

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int Fallocate(SafeFileHandle fd, int mode, long offset, long length);

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    private static partial long Lseek(SafeFileHandle fd, long offset, int whence);

    [LibraryImport("libc", EntryPoint = "fstat", SetLastError = true)]
    private static unsafe partial int Fstat(SafeFileHandle fd, byte* statBuffer);

    /// <summary>errno values the preallocation callers tell apart.</summary>
    public const int EINTR = 4, ENODEV = 19, ENOTTY = 25, ENOSYS = 38, EOPNOTSUPP = 95;

    [LibraryImport("libc", EntryPoint = "posix_fallocate")]
    private static partial int PosixFallocateNative(SafeFileHandle fd, long offset, long length);

    /// <summary>
    /// Reserves blocks without changing the content (fallocate mode 0), extending the file when the range ends past
    /// it. Returns 0, or the errno: ENOSPC when the file system is full, EOPNOTSUPP (ENOSYS, ENODEV and ENOTTY
    /// included) when it cannot reserve space this way.
    /// </summary>
    public static int Preallocate(SafeFileHandle fd, long offset, long length)
    {
        while (Fallocate(fd, 0, offset, length) != 0)
        {
            int error = Marshal.GetLastPInvokeError();
            if (error == EINTR) continue;
            return error is ENOSYS or ENODEV or ENOTTY ? EOPNOTSUPP : error;
        }
        return 0;
    }

    /// <summary>
    /// posix_fallocate(3), which QEMU uses for preallocation=falloc: where the file system has no fallocate, glibc
    /// reserves the range by writing a zero byte into each block that holds none. Returns 0 or the errno.
    /// </summary>
    public static int PosixFallocate(SafeFileHandle fd, long offset, long length) => PosixFallocateNative(fd, offset, length);

    /// <summary>Deallocates a range inside the file; it reads as zero afterwards.</summary>
    public static bool TryPunchHole(SafeFileHandle fd, long offset, long length)
        => IsAvailable && Fallocate(fd, FallocPunchHole | FallocKeepSize, offset, length) == 0;

    /// <summary>Zeroes a range cheaply while keeping it allocated.</summary>
    public static bool TryZeroRange(SafeFileHandle fd, long offset, long length)
        => IsAvailable && Fallocate(fd, FallocZeroRange | FallocKeepSize, offset, length) == 0;

    /// <summary>The data or hole run starting at <paramref name="offset"/> (which must be below <paramref name="fileLength"/>).</summary>
    public static bool TryGetExtent(SafeFileHandle fd, long offset, long fileLength, out bool isData, out long length)
    {
        isData = true;
        length = fileLength - offset;
        if (!IsAvailable) return false;
        long data = Lseek(fd, offset, SeekData);
        if (data < 0)
        {
            if (Marshal.GetLastPInvokeError() != ENXIO) return false;
            isData = false; // nothing but hole up to the end
            return true;
        }
        if (data > offset)
        {
            isData = false;
            length = data - offset;
            return true;
        }
        long hole = Lseek(fd, offset, SeekHole);
        if (hole < 0) return false;
        length = Math.Min(hole, fileLength) - offset;
        return length > 0;
    }

    /// <summary>Bytes allocated to the file (st_blocks * 512), or -1.</summary>
    public static unsafe long AllocatedBytes(SafeFileHandle fd)
    {
        if (!IsAvailable) return -1;
        byte* stat = stackalloc byte[256];
        if (Fstat(fd, stat) != 0) return -1;
        const int StBlocksOffset = 64; // same on x86_64 and aarch64
        return *(long*)(stat + StBlocksOffset) * 512;
    }
}
