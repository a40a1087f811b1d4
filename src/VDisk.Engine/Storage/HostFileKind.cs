// What kind of file a path names, asked before the file is opened: opening a FIFO for reading blocks until a
// writer appears (forever, and Ctrl+C cannot interrupt the open), and opening some character devices has side
// effects (a watchdog arms, a tape rewinds). So images, backing files and extents are checked with statx(2),
// (HostFileInfo), which follows symbolic links and opens nothing, and only regular files and block devices are
// read (qemu-img reads both). A block device's size is not in its stat data, so it is asked with lseek(SEEK_END).
using System.Runtime.InteropServices;
using VDisk.Engine.Core;

namespace VDisk.Engine.Storage;

/// <summary>Checks what a path is before an image is opened from it.</summary>
public static partial class HostFileKind
{
    private const int ReadOnly = 0, CloseOnExec = 0x80000, NoControllingTty = 0x100, NonBlocking = 0x800, SeekEnd = 2;

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
    public static bool Exists(string path) => HostFileInfo.Of(path).Type != HostFileType.Missing;

    /// <summary>The type of the file <paramref name="path"/> names, following symbolic links.</summary>
    public static HostFileType Of(string path) => HostFileInfo.Of(path).Type;

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

/// <summary>A block device opened as an input: its length is the device size (stat reports 0 for devices).</summary>
internal sealed class DeviceSizedStorage : StorageWrapper
{
    private readonly long _length;

    /// <summary>Wraps the device storage <paramref name="inner"/> with the device's size.</summary>
    public DeviceSizedStorage(IStorage inner, long length) : base(inner) => _length = length;

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
