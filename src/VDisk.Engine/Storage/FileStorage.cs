// Host-file storage on SafeFileHandle + RandomAccess (DESIGN.md "Storage", "Storage alignment"): positional
// I/O only, cache modes with QEMU's meanings, sparse-file helpers on Linux. With O_DIRECT, aligned requests go
// straight to the kernel, unaligned ones bounce through pooled aligned buffers under a lock that aligned writes
// share (so a VM's queue depth of them runs in parallel) and an unaligned write holds alone, and a file system that
// refuses O_DIRECT is an error, as in QEMU, never a silent fallback.
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using VDisk.Engine.Core;

namespace VDisk.Engine.Storage;

/// <summary>An image file on the host, accessed only by offset.</summary>
public sealed class FileStorage : IStorage
{
    private const int DirectAlignment = AlignedBufferPool.Alignment;
    private const FileOptions NoBuffering = (FileOptions)0x20000000; // Windows FILE_FLAG_NO_BUFFERING
    private readonly SafeFileHandle _handle;
    private readonly bool _direct;
    // Aligned direct writes share it; an unaligned write's read-modify-write, zeroing, discarding and resizing hold it alone.
    private readonly ReaderWriterLockSlim _directWriteLock = new(LockRecursionPolicy.SupportsRecursion);
    private bool _fallocateUnsupported;
    private long _hostFlushes;

    private FileStorage(string path, SafeFileHandle handle, bool write, CacheMode mode, bool direct)
    {
        Name = path;
        _handle = handle;
        CanWrite = write;
        CacheMode = mode;
        _direct = direct;
    }

    /// <inheritdoc/>
    public string Name { get; }
    /// <inheritdoc/>
    public bool CanWrite { get; }
    /// <inheritdoc/>
    public CacheMode CacheMode { get; }
    /// <inheritdoc/>
    public long Length => RandomAccess.GetLength(_handle);

    /// <summary>The file handle (tests read its open flags).</summary>
    internal SafeFileHandle Handle => _handle;

    /// <summary>How many flushes reached the host (fsync) since the file was opened; tests prove Unsafe issues none.</summary>
    internal long HostFlushes => Interlocked.Read(ref _hostFlushes);

    /// <inheritdoc/>
    public int Alignment => _direct ? DirectAlignment : 1;

    /// <summary>The QEMU-compatible lock the file was opened with (files that belong to it, like VMDK extents, take the same).</summary>
    public ImageLockMode LockMode { get; private set; }

    /// <summary>
    /// Opens an existing file, locked the way QEMU locks images: for consistent reads, or for writing when
    /// <paramref name="write"/> (see <see cref="ImageLockMode"/>; <paramref name="lockMode"/> overrides).
    /// </summary>
    public static FileStorage Open(string path, bool write, CacheMode mode = CacheMode.Writeback, ImageLockMode? lockMode = null)
    {
        var storage = OpenCore(path, FileMode.Open, write, mode);
        try
        {
            storage.LockMode = lockMode ?? (write ? ImageLockMode.Write : ImageLockMode.Read);
            ImageLocks.Acquire(storage._handle, path, storage.LockMode);
            return storage;
        }
        catch
        {
            storage.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Creates a new empty file; fails if it exists unless <paramref name="overwrite"/>. An existing file is emptied
    /// only once its QEMU locks are held (as QEMU's raw_co_create does), so a file a VM has open is refused, not truncated.
    /// </summary>
    public static FileStorage Create(string path, bool overwrite, CacheMode mode = CacheMode.Writeback)
    {
        var storage = OpenCore(path, overwrite ? FileMode.OpenOrCreate : FileMode.CreateNew, true, mode);
        try
        {
            storage.LockMode = ImageLockMode.Write;
            ImageLocks.Acquire(storage._handle, path, storage.LockMode);
            if (overwrite) storage.SetLength(0);
            return storage;
        }
        catch
        {
            storage.Dispose();
            throw;
        }
    }

    private static FileStorage OpenCore(string path, FileMode fileMode, bool write, CacheMode mode)
    {
        var access = write ? FileAccess.ReadWrite : FileAccess.Read;
        var share = write ? FileShare.Read : FileShare.ReadWrite;
        var options = mode.WritesAreDurable() ? FileOptions.WriteThrough : FileOptions.None;
        if (!mode.BypassesHostCache())
        {
            // FileOptions.WriteThrough is O_SYNC on Linux, which also commits the timestamps each write changes. QEMU's
            // writethrough is a write followed by fdatasync (blk_co_pwritev sets FUA, which block/io.c emulates with a
            // flush), so the exact per-write equivalent is O_DSYNC: reopen with it, as for O_DIRECT below.
            if (mode.WritesAreDurable() && LinuxFileApi.IsAvailable && !OperatingSystem.IsWindows())
            {
                if (fileMode != FileMode.Open) File.OpenHandle(path, fileMode, access, share).Dispose();
                var dsync = LinuxFileApi.OpenFlags(path, write, direct: false, sync: true, out _);
                if (dsync != null) return new FileStorage(path, dsync, write, mode, false);
                return new FileStorage(path, File.OpenHandle(path, FileMode.Open, access, share, options), write, mode, false);
            }
            return new FileStorage(path, File.OpenHandle(path, fileMode, access, share, options), write, mode, false);
        }

        if (OperatingSystem.IsWindows())
            return new FileStorage(path, File.OpenHandle(path, fileMode, access, share, options | NoBuffering), write, mode, true);

        // Create or truncate with a normal open first, then reopen with O_DIRECT (no FileOptions value gives it on Linux).
        if (fileMode != FileMode.Open) File.OpenHandle(path, fileMode, access, share).Dispose();
        var direct = LinuxFileApi.OpenDirect(path, write, mode.WritesAreDurable(), out int errno);
        if (direct != null) return new FileStorage(path, direct, write, mode, true);
        if (errno == LinuxFileApi.EINVAL || !LinuxFileApi.IsAvailable)
            throw VDiskException.Unsupported(path, $"the file system ({LinuxFileApi.FileSystemName(path)}) does not support O_DIRECT, which cache mode " +
                $"{mode} needs; use cache mode Writeback or Writethrough for files there.");
        // Any other refusal (permissions, a vanished file) is reported by a plain open, with .NET's own exception.
        return new FileStorage(path, File.OpenHandle(path, FileMode.Open, access, share, options), write, mode, false);
    }

    /// <inheritdoc/>
    public void ReadAt(long offset, Span<byte> buffer)
    {
        if (_direct && !IsAligned(offset, buffer))
        {
            ReadAligned(offset, buffer);
            return;
        }
        ReadFully(_handle, buffer, offset);
    }

    /// <summary>Reads <paramref name="buffer"/>.Length bytes at <paramref name="offset"/>; bytes past the end read as zero.</summary>
    internal static void ReadFully(SafeFileHandle handle, Span<byte> buffer, long offset)
    {
        int done = 0;
        while (done < buffer.Length)
        {
            int n = RandomAccess.Read(handle, buffer[done..], offset + done);
            if (n <= 0) break;
            done += n;
        }
        buffer[done..].Clear();
    }

    /// <inheritdoc/>
    public void WriteAt(long offset, ReadOnlySpan<byte> data)
    {
        if (!_direct)
        {
            RandomAccess.Write(_handle, data, offset);
            return;
        }
        bool aligned = IsAligned(offset, data); // an aligned write must not land between an unaligned write's read and write-back
        if (aligned) _directWriteLock.EnterReadLock();
        else _directWriteLock.EnterWriteLock();
        try
        {
            if (aligned) RandomAccess.Write(_handle, data, offset);
            else WriteAligned(offset, data);
        }
        finally
        {
            if (aligned) _directWriteLock.ExitReadLock();
            else _directWriteLock.ExitWriteLock();
        }
    }

    /// <inheritdoc/>
    public void Discard(long offset, long length)
    {
        if (length <= 0) return;
        _directWriteLock.EnterWriteLock();
        try
        {
            long end = Math.Min(offset + length, Length);
            if (offset >= end) return;
            if (!LinuxFileApi.TryPunchHole(_handle, offset, end - offset)) WriteZeroBuffer(offset, end - offset);
        }
        finally
        {
            _directWriteLock.ExitWriteLock();
        }
    }

    /// <inheritdoc/>
    public void WriteZeroes(long offset, long length)
    {
        if (length <= 0) return;
        _directWriteLock.EnterWriteLock();
        try
        {
            long fileLength = Length;
            if (offset >= fileLength)
            {
                SetLength(offset + length); // the new tail reads as zeroes
                return;
            }
            if (offset + length > fileLength) SetLength(offset + length);
            if (!LinuxFileApi.TryZeroRange(_handle, offset, length)) WriteZeroBuffer(offset, length);
        }
        finally
        {
            _directWriteLock.ExitWriteLock();
        }
    }

    /// <summary>
    /// Reserves host space for the range (fallocate). A full file system is an error; where the file system has no
    /// fallocate, the space is reserved by writing zeroes, as qemu-img does, and a warning says so (see
    /// <see cref="HostPreallocation"/>).
    /// </summary>
    public void Preallocate(long offset, long length)
    {
        if (length <= 0) return;
        if (LinuxFileApi.IsAvailable)
            HostPreallocation.Reserve(_handle, Name, offset, length, ref _fallocateUnsupported);
        else if (offset + length > Length)
            SetLength(offset + length);
    }

    /// <inheritdoc/>
    public void SetLength(long length)
    {
        _directWriteLock.EnterWriteLock();
        try
        {
            RandomAccess.SetLength(_handle, length);
        }
        finally
        {
            _directWriteLock.ExitWriteLock();
        }
    }

    /// <inheritdoc/>
    public void Flush()
    {
        if (!CanWrite || !CacheMode.HonoursFlush()) return;
        RandomAccess.FlushToDisk(_handle);
        Interlocked.Increment(ref _hostFlushes);
    }

    /// <inheritdoc/>
    public long AllocatedBytes
    {
        get
        {
            long bytes = LinuxFileApi.AllocatedBytes(_handle);
            return bytes >= 0 ? bytes : Length;
        }
    }

    /// <inheritdoc/>
    public bool TryGetExtent(long offset, out bool isData, out long length)
        => LinuxFileApi.TryGetExtent(_handle, offset, Length, out isData, out length);

    /// <inheritdoc/>
    public void Dispose()
    {
        _handle.Dispose();
        _directWriteLock.Dispose();
    }

    private static unsafe bool IsAligned(long offset, ReadOnlySpan<byte> memory)
    {
        fixed (byte* address = memory)
            return offset % DirectAlignment == 0 && memory.Length % DirectAlignment == 0 && (nint)address % DirectAlignment == 0;
    }

    private void WriteZeroBuffer(long offset, long length)
    {
        var zeroes = new byte[(int)Math.Min(length, 1 << 20)];
        for (long done = 0; done < length; done += zeroes.Length)
            WriteAt(offset + done, zeroes.AsSpan(0, (int)Math.Min(zeroes.Length, length - done)));
    }

    // O_DIRECT needs aligned offsets, lengths and memory: go through a pooled aligned bounce buffer.
    private void ReadAligned(long offset, Span<byte> buffer)
    {
        long start = offset / DirectAlignment * DirectAlignment;
        long end = (offset + buffer.Length + DirectAlignment - 1) / DirectAlignment * DirectAlignment;
        using var bounce = AlignedBufferPool.Shared.Rent((int)(end - start));
        var span = bounce.Memory.Span;
        ReadFully(_handle, span, start);
        span.Slice((int)(offset - start), buffer.Length).CopyTo(buffer);
    }

    // Read-modify-write of the aligned blocks around an unaligned write; the caller holds the direct-write lock.
    private void WriteAligned(long offset, ReadOnlySpan<byte> data)
    {
        long oldLength = Length;
        long start = offset / DirectAlignment * DirectAlignment;
        long end = (offset + data.Length + DirectAlignment - 1) / DirectAlignment * DirectAlignment;
        using var bounce = AlignedBufferPool.Shared.Rent((int)(end - start));
        var span = bounce.Memory.Span;
        ReadAligned(start, span);
        data.CopyTo(span[(int)(offset - start)..]);
        RandomAccess.Write(_handle, span, start);
        long wanted = Math.Max(oldLength, offset + data.Length);
        if (end > wanted) SetLength(wanted); // undo the padding past the real end
    }
}
