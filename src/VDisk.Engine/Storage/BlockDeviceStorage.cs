// Writing into an existing block device (a disk, partition, LVM volume or loop device), as qemu-img's host_device
// driver does (QEMU block/file-posix.c: hdev_open, check_hdev_writable, raw_getlength; zeroing without a slow
// fallback, as BDRV_REQ_NO_FALLBACK asks: fallocate(PUNCH_HOLE) on a block device zeroes only if the device can do
// it without writing every block). The device is opened with O_EXCL, which the kernel refuses while a file system
// is mounted on it or device-mapper, RAID or swap holds it; QEMU's write locks are taken so a VM using it is
// refused too; a read-only device (blockdev --setro) and one smaller than the image are refused before anything is
// written. The storage is a window of the device's first Length bytes: it cannot grow, and bytes past the window
// are left as they are. Linux only.
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using VDisk.Engine.Core;

namespace VDisk.Engine.Storage;

/// <summary>The first <see cref="Length"/> bytes of a block device, opened exclusively for writing.</summary>
internal sealed partial class BlockDeviceStorage : IStorage
{
    private const int ReadWrite = 2, Exclusive = 0x80, DataSync = 0x1000, CloseOnExec = 0x80000;
    private const uint BlkRoGet = 0x125e, BlkGetSize64 = 0x80081272;
    private const int ENOENT = 2, EACCES = 13, EBUSY = 16, EPERM = 1, EROFS = 30;
    private readonly SafeFileHandle _handle;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(SafeFileHandle fd, nuint request, out long value);

    private BlockDeviceStorage(string path, SafeFileHandle handle, long length, CacheMode mode)
    {
        Name = path;
        _handle = handle;
        Length = length;
        CacheMode = mode;
    }

    /// <inheritdoc/>
    public string Name { get; }
    /// <inheritdoc/>
    public bool CanWrite => true;
    /// <inheritdoc/>
    public CacheMode CacheMode { get; }
    /// <inheritdoc/>
    public long Length { get; }
    /// <inheritdoc/>
    public long AllocatedBytes => Length;

    /// <summary>
    /// Opens the block device <paramref name="path"/> to write an image of <paramref name="length"/> bytes into it.
    /// Errors: InUse (mounted, held by the kernel, or locked by a VM), ReadOnly, UnsupportedDestination (too small).
    /// <paramref name="mode"/> must not bypass the host cache (O_DIRECT is not supported here).
    /// </summary>
    public static BlockDeviceStorage Open(string path, long length, CacheMode mode)
    {
        int fd = Open(path, ReadWrite | Exclusive | CloseOnExec | (mode.WritesAreDurable() ? DataSync : 0), 0);
        if (fd < 0) throw OpenError(path, Marshal.GetLastPInvokeError());
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        try
        {
            ImageLocks.Acquire(handle, path, ImageLockMode.Write);
            if (Ioctl(handle, BlkRoGet, out long readOnly) == 0 && (int)readOnly != 0)
                throw new VDiskException(VDiskErrorKind.ReadOnly, path, $"{path} is a read-only block device (see blockdev --getro); nothing was written.");
            if (Ioctl(handle, BlkGetSize64, out long size) != 0)
                throw new VDiskException(VDiskErrorKind.IoError, path, $"{path}: cannot read the block device's size: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}.");
            if (size < length)
                throw new VDiskException(VDiskErrorKind.UnsupportedDestination, path,
                    $"{path} holds {size} bytes, less than the image's virtual size of {length} bytes; nothing was written. Use a device of at least that size.");
            return new BlockDeviceStorage(path, handle, length, mode);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Makes the whole window read as zeroes if the device can do it without writing every byte (write-zeroes or
    /// discard that zeroes, QEMU's BDRV_REQ_NO_FALLBACK). False when it cannot; then nothing has changed.
    /// </summary>
    public bool TryZeroQuickly()
    {
        long whole = Length / 4096 * 4096; // device zeroing wants whole logical blocks
        if (whole > 0 && !LinuxFileApi.TryPunchHole(_handle, 0, whole)) return false;
        if (whole < Length) WriteZeroBuffer(whole, Length - whole);
        return true;
    }

    /// <inheritdoc/>
    public void ReadAt(long offset, Span<byte> buffer) => FileStorage.ReadFully(_handle, buffer, offset);

    /// <inheritdoc/>
    public void WriteAt(long offset, ReadOnlySpan<byte> data)
    {
        CheckInside(offset, data.Length);
        RandomAccess.Write(_handle, data, offset);
    }

    /// <inheritdoc/>
    public void Discard(long offset, long length) => WriteZeroes(offset, length);

    /// <inheritdoc/>
    public void WriteZeroes(long offset, long length)
    {
        if (length <= 0) return;
        CheckInside(offset, length);
        WriteZeroBuffer(offset, length);
    }

    /// <inheritdoc/>
    public void Preallocate(long offset, long length) => CheckInside(offset, length); // a device's space is all there

    /// <inheritdoc/>
    public void SetLength(long length)
    {
        if (length != Length) throw new IOException($"{Name}: a block device cannot be resized.");
    }

    /// <inheritdoc/>
    public void Flush()
    {
        if (CacheMode.HonoursFlush()) RandomAccess.FlushToDisk(_handle);
    }

    /// <inheritdoc/>
    public bool TryGetExtent(long offset, out bool isData, out long length)
    {
        isData = true;
        length = Length - offset;
        return false;
    }

    /// <inheritdoc/>
    public void Dispose() => _handle.Dispose();

    private void CheckInside(long offset, long length)
    {
        if (offset < 0 || offset + length > Length)
            throw new IOException($"{Name}: a write at {offset} of {length} bytes would pass the image's end at {Length} bytes.");
    }

    private void WriteZeroBuffer(long offset, long length)
    {
        var zeroes = new byte[(int)Math.Min(length, 1 << 20)];
        for (long done = 0; done < length; done += zeroes.Length)
            RandomAccess.Write(_handle, zeroes.AsSpan(0, (int)Math.Min(zeroes.Length, length - done)), offset + done);
    }

    private static VDiskException OpenError(string path, int error) => error switch
    {
        EBUSY => new VDiskException(VDiskErrorKind.InUse, path,
            $"{path} is in use by the kernel (a mounted file system, LVM, RAID or swap holds it); nothing was written. Unmount or release it first."),
        EACCES or EPERM or EROFS => new VDiskException(VDiskErrorKind.ReadOnly, path, $"{path}: {Marshal.GetPInvokeErrorMessage(error)}."),
        ENOENT => new VDiskException(VDiskErrorKind.NotFound, path, $"{path}: no such device."),
        _ => new VDiskException(VDiskErrorKind.IoError, path, $"{path}: {Marshal.GetPInvokeErrorMessage(error)}."),
    };
}
