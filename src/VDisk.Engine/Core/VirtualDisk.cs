// The one shared data path (DESIGN.md "Core: the image abstraction"): guest reads, writes, zeroing and
// block status over a format driver, falling through to the backing image for unallocated ranges.
using System.Buffers;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Core;

/// <summary>What a guest range holds, seen through the whole chain.</summary>
/// <param name="Kind">Data (including compressed), Zero, or Unallocated in every layer.</param>
/// <param name="Length">Bytes covered.</param>
/// <param name="Depth">The layer that decides the content: 0 is this image, 1 its backing, ...</param>
public readonly record struct BlockStatus(ExtentKind Kind, long Length, int Depth);

/// <summary>An open image with its backing chain: the guest's view of a disk.</summary>
public sealed class VirtualDisk : IDisposable
{
    private readonly object _writeLock = new();

    /// <summary>Wraps an open driver and (optionally) its opened backing image; both are owned.</summary>
    public VirtualDisk(string path, IImageDriver driver, VirtualDisk? backing, bool writable)
    {
        Path = path;
        Driver = driver;
        Backing = backing;
        CanWrite = writable;
    }

    /// <summary>Full path of the image file.</summary>
    public string Path { get; }
    /// <summary>The format driver.</summary>
    public IImageDriver Driver { get; }
    /// <summary>The opened backing image, or null.</summary>
    public VirtualDisk? Backing { get; }
    /// <summary>True when opened for writing.</summary>
    public bool CanWrite { get; }
    /// <summary>Guest-visible size in bytes.</summary>
    public long Length => Driver.VirtualSize;
    /// <summary>The image format.</summary>
    public ImageFormat Format => Driver.Format;

    /// <summary>Reads guest bytes; safe to call from several threads at once.</summary>
    public void Read(long offset, Span<byte> destination)
    {
        CheckRange(offset, destination.Length);
        while (!destination.IsEmpty)
        {
            var m = Driver.Map(offset, destination.Length);
            int n = (int)m.Length;
            var part = destination[..n];
            switch (m.Kind)
            {
                case ExtentKind.Data: m.Storage!.ReadAt(m.HostOffset, part); break;
                case ExtentKind.Compressed: Driver.ReadCompressed(offset, part); break;
                case ExtentKind.Zero: part.Clear(); break;
                default: ReadBeneath(offset, part); break;
            }
            offset += n;
            destination = destination[n..];
        }
    }

    /// <summary>Writes guest bytes, allocating (and copying on write from the backing image) as needed.</summary>
    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        CheckWritable();
        CheckRange(offset, source.Length);
        lock (_writeLock)
        {
            while (!source.IsEmpty)
            {
                var m = Driver.Map(offset, source.Length);
                int n;
                if (m.Writable)
                {
                    n = (int)m.Length;
                    m.Storage!.WriteAt(m.HostOffset, source[..n]);
                }
                else
                {
                    n = WriteAllocating(offset, source, m.Length);
                }
                offset += n;
                source = source[n..];
            }
        }
    }

    /// <summary>
    /// Stores a compressed <paramref name="payload"/> (made by the driver's <see cref="ICompressedClusterWriter.TryCompress"/>)
    /// for the unit starting at <paramref name="offset"/>, replacing what the unit held: the compressed twin of
    /// <see cref="Write"/>, with the same range checks and lock.
    /// </summary>
    public void WriteCompressed(long offset, ReadOnlySpan<byte> payload)
    {
        CheckWritable();
        var writer = Driver as ICompressedClusterWriter
            ?? throw VDiskException.Invalid(Path, $"{Path}: {FormatProbe.Name(Format)} images cannot store compressed data.");
        CheckRange(offset, Math.Min(writer.CompressionUnit, Length - offset));
        if (offset % writer.CompressionUnit != 0)
            throw VDiskException.Invalid(Path, $"{Path}: compressed data is stored in whole {writer.CompressionUnit}-byte units; offset {offset} is not on a unit boundary.");
        lock (_writeLock) writer.WriteCompressed(offset, payload);
    }

    /// <summary>
    /// Makes a guest range read as zeroes. With <paramref name="unmap"/> the image may release the space
    /// (discard); without it, space stays allocated where the format allows.
    /// </summary>
    public void WriteZeroes(long offset, long length, bool unmap = true)
    {
        CheckWritable();
        CheckRange(offset, length);
        long cluster = Driver.ClusterSize;
        lock (_writeLock)
        {
            long end = offset + length;
            long alignedStart = AlignUp(offset, cluster);
            long alignedEnd = end == Length ? AlignUp(end, cluster) : end / cluster * cluster;
            if (alignedStart >= alignedEnd)
            {
                WriteZeroBytes(offset, length);
                return;
            }
            WriteZeroBytes(offset, alignedStart - offset);
            long pos = alignedStart;
            while (pos < alignedEnd && pos < Length) // the last cluster may end past the disk: it counts as whole
            {
                long done = Driver.ZeroClusters(pos, alignedEnd - pos, unmap);
                if (done <= 0)
                {
                    done = Math.Min(alignedEnd - pos, 1 << 20);
                    WriteZeroBytes(pos, Math.Min(done, Length - pos));
                }
                pos += done;
            }
            if (end < Length) WriteZeroBytes(alignedEnd, end - alignedEnd);
        }
    }

    /// <summary>Says what the run starting at <paramref name="offset"/> holds, looking down the chain.</summary>
    public BlockStatus GetBlockStatus(long offset, long maxLength)
    {
        CheckRange(offset, 1);
        maxLength = Math.Min(maxLength, Length - offset);
        var m = Driver.Map(offset, maxLength);
        if (m.Kind != ExtentKind.Unallocated)
            return new BlockStatus(m.Kind == ExtentKind.Zero ? ExtentKind.Zero : ExtentKind.Data, m.Length, 0);
        if (Backing is null) return new BlockStatus(ExtentKind.Unallocated, m.Length, 0);
        if (offset >= Backing.Length) return new BlockStatus(ExtentKind.Zero, m.Length, 1);
        var below = Backing.GetBlockStatus(offset, Math.Min(m.Length, Backing.Length - offset));
        return below with { Depth = below.Depth + 1 };
    }

    /// <summary>Writes cached metadata and flushes the image file (not the read-only backing files).</summary>
    public void Flush()
    {
        if (CanWrite) Driver.Flush();
    }

    /// <summary>Flushes (when writable) and closes the image and its backing chain.</summary>
    public void Dispose()
    {
        try { Driver.Dispose(); }
        finally { Backing?.Dispose(); }
    }

    // Content of a range this layer does not hold: the backing image's, zero past its end.
    private void ReadBeneath(long offset, Span<byte> destination)
    {
        if (Backing is null || offset >= Backing.Length)
        {
            destination.Clear();
            return;
        }
        int fromBacking = (int)Math.Min(destination.Length, Backing.Length - offset);
        Backing.Read(offset, destination[..fromBacking]);
        destination[fromBacking..].Clear();
    }

    // Write into clusters that are not writable in place: reserve fresh clusters, fill the parts of the
    // first and last cluster the write does not cover with the current guest content, write, then link.
    private int WriteAllocating(long offset, ReadOnlySpan<byte> source, long mappedLength)
    {
        long cluster = Driver.ClusterSize;
        long start = offset / cluster * cluster;
        long end = Math.Min(AlignUp(offset + Math.Min(source.Length, mappedLength), cluster), AlignUp(Length, cluster));
        var run = Driver.Allocate(start, end - start);
        long runEnd = start + run.Length;
        long writeEnd = Math.Min(offset + source.Length, runEnd);

        FillAroundWrite(run, start, start, offset);
        int n = (int)(writeEnd - offset);
        run.Storage.WriteAt(run.Offset + (offset - start), source[..n]);
        FillAroundWrite(run, start, writeEnd, runEnd);
        Driver.Link(start, run);
        return n;
    }

    // Copies the current guest content of [from, to) into the fresh run that starts at guest runGuestStart.
    private void FillAroundWrite(HostRun run, long runGuestStart, long from, long to)
    {
        if (to <= from) return;
        long guestEnd = Math.Min(to, Length);
        int length = (int)(to - from);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var span = buffer.AsSpan(0, length);
            span.Clear();
            if (guestEnd > from) Read(from, span[..(int)(guestEnd - from)]);
            long host = run.Offset + (from - runGuestStart);
            if (span.IndexOfAnyExcept((byte)0) < 0) run.Storage.WriteZeroes(host, length);
            else run.Storage.WriteAt(host, span);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void WriteZeroBytes(long offset, long length)
    {
        if (length <= 0) return;
        byte[] zeroes = new byte[(int)Math.Min(length, 1 << 20)];
        for (long done = 0; done < length; done += zeroes.Length)
            Write(offset + done, zeroes.AsSpan(0, (int)Math.Min(zeroes.Length, length - done))); // the lock is reentrant
    }

    private void CheckRange(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Length)
            throw VDiskException.Invalid(Path, $"{Path}: range {offset}+{length} is outside the virtual disk ({Length} bytes).");
    }

    private void CheckWritable()
    {
        if (!CanWrite) throw new VDiskException(VDiskErrorKind.ReadOnly, Path, $"{Path} is open read-only.");
    }

    private static long AlignUp(long value, long alignment) => (value + alignment - 1) / alignment * alignment;
}
