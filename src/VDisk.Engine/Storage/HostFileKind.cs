// What kind of file a path names, asked before the file is opened: opening a FIFO for reading blocks until a
// writer appears (forever, and Ctrl+C cannot interrupt the open), and opening some character devices has side
// effects (a watchdog arms, a tape rewinds). So images, backing files and extents are checked with statx(2),
// which follows symbolic links and opens nothing, and only regular files and block devices are read
// (qemu-img reads both). A block device's size is not in its stat data, so it is asked with lseek(SEEK_END).
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using VDisk.Engine.Core;

namespace VDisk.Engine.Storage;

/// <summary>The type of a host file, as stat(2) reports it.</summary>
public enum HostFileType
{
    /// <summary>The host cannot tell (not Linux, or stat failed): the open itself decides.</summary>
    Unknown,
    /// <summary>A regular file.</summary>
    Regular,
    /// <summary>A block device (a disk, partition or logical volume).</summary>
    BlockDevice,
    /// <summary>A directory.</summary>
    Directory,
    /// <summary>A named pipe.</summary>
    Fifo,
    /// <summary>A character device (/dev/zero, a terminal, a watchdog).</summary>
    CharacterDevice,
    /// <summary>A Unix socket.</summary>
    Socket,
}

/// <summary>Checks what a path is before an image is opened from it.</summary>
public static partial class HostFileKind
{
    private const int AtFdCwd = -100, StatxType = 0x1, StatxModeOffset = 28, StatxBufferSize = 256;
    private const int ModeTypeMask = 0xf000;
    private const int NoEntry = 2, NotDirectory = 20, NameTooLong = 36, TooManyLinks = 40; // errno values (Linux)
    private const int ReadOnly = 0, CloseOnExec = 0x80000, NoControllingTty = 0x100, NonBlocking = 0x800, SeekEnd = 2;

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directoryFd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    private static partial long Lseek(int fd, long offset, int whence);

    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    /// <summary>
    /// True when <paramref name="path"/> names something, following symbolic links: false for a missing file, a dangling
    /// link or a link loop (File.Exists says true for those), true when the host cannot tell (the open decides).
    /// </summary>
    public static unsafe bool Exists(string path)
    {
        if (!LinuxFileApi.IsAvailable || path.Contains('\0')) return File.Exists(path) || Directory.Exists(path);
        byte* buffer = stackalloc byte[StatxBufferSize];
        if (Statx(AtFdCwd, path, 0, StatxType, buffer) == 0) return true;
        return Marshal.GetLastPInvokeError() is not (NoEntry or NotDirectory or NameTooLong or TooManyLinks);
    }

    /// <summary>The type of the file <paramref name="path"/> names, following symbolic links.</summary>
    public static unsafe HostFileType Of(string path)
    {
        if (!LinuxFileApi.IsAvailable || path.Contains('\0')) return HostFileType.Unknown;
        byte* buffer = stackalloc byte[StatxBufferSize];
        if (Statx(AtFdCwd, path, 0, StatxType, buffer) != 0) return HostFileType.Unknown;
        int mode = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(buffer + StatxModeOffset, 2));
        return (mode & ModeTypeMask) switch
        {
            0x8000 => HostFileType.Regular,
            0x6000 => HostFileType.BlockDevice,
            0x4000 => HostFileType.Directory,
            0x1000 => HostFileType.Fifo,
            0x2000 => HostFileType.CharacterDevice,
            0xc000 => HostFileType.Socket,
            _ => HostFileType.Unknown,
        };
    }

    /// <summary>
    /// Throws <see cref="VDiskErrorKind.NotAnImage"/> unless <paramref name="path"/> is a regular file or a block device
    /// (or the host cannot tell). <paramref name="role"/> says what the file is to the operation ("the backing file of
    /// '/images/a.qcow2'"), or is null for an image named directly. Returns the type found.
    /// </summary>
    public static HostFileType EnsureReadable(string path, string? role = null)
    {
        var type = Of(path);
        string? what = type switch
        {
            HostFileType.Fifo => "a named pipe (FIFO)",
            HostFileType.CharacterDevice => "a character device",
            HostFileType.Socket => "a socket",
            HostFileType.Directory => "a directory",
            _ => null,
        };
        if (what is null) return type;
        string of = role is null ? "" : $" ({role})";
        throw new VDiskException(VDiskErrorKind.NotAnImage, path,
            $"{path}{of} is {what}, not a disk image: VDisk reads images only from regular files and block devices, and does not open other kinds of file.");
    }

    /// <summary>The size in bytes of the block device <paramref name="path"/>, or null when it cannot be found.</summary>
    public static long? BlockDeviceLength(string path)
    {
        if (!LinuxFileApi.IsAvailable) return null;
        int fd = Open(path, ReadOnly | CloseOnExec | NoControllingTty | NonBlocking, 0);
        if (fd < 0) return null;
        try
        {
            long end = Lseek(fd, 0, SeekEnd);
            return end >= 0 ? end : null;
        }
        finally
        {
            Close(fd);
        }
    }
}

/// <summary>A block device opened as storage: its length is the device size (stat reports 0 for devices).</summary>
internal sealed class BlockDeviceStorage : StorageWrapper
{
    private readonly long _length;

    /// <summary>Wraps the device storage <paramref name="inner"/> with the device's size.</summary>
    public BlockDeviceStorage(IStorage inner, long length) : base(inner) => _length = length;

    /// <inheritdoc/>
    public override long Length => Math.Max(_length, Inner.Length);

    /// <inheritdoc/>
    public override long AllocatedBytes => Length;

    /// <inheritdoc/>
    public override bool TryGetExtent(long offset, out bool isData, out long length)
    {
        isData = true;
        length = Length - offset;
        return false;
    }
}
