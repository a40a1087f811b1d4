// Extents (VMware Virtual Disk Format 1.1, "Layout Basics" and "Simple Extents"): each extent maps one
// contiguous guest range to one host file. A flat extent is the guest range stored as-is from a sector
// offset of its file; sparse extents are in VmdkSparseExtent.cs.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>One extent of a VMDK disk. Offsets passed to its methods are relative to the extent's start.</summary>
internal abstract class VmdkExtent
{
    protected VmdkExtent(IStorage storage, long guestStart, long length)
    {
        Storage = storage;
        GuestStart = guestStart;
        Length = length;
    }

    /// <summary>The host file holding the extent.</summary>
    public IStorage Storage { get; }
    /// <summary>Guest offset of the extent's first byte.</summary>
    public long GuestStart { get; }
    /// <summary>Guest bytes the extent covers.</summary>
    public long Length { get; }

    /// <summary>The run at <paramref name="offset"/>, at most <paramref name="maxLength"/> bytes and inside the extent.</summary>
    public abstract Mapping Map(long offset, long maxLength);

    /// <summary>Guest bytes of a compressed run (inside one grain).</summary>
    public abstract void ReadCompressed(long offset, Span<byte> destination);

    /// <summary>Fresh host space for the grain-aligned range at <paramref name="offset"/> (see <see cref="IImageDriver.Allocate"/>).</summary>
    public abstract HostRun Allocate(long offset, long length);

    /// <summary>Points the range at <paramref name="run"/> after its data was written.</summary>
    public abstract void Link(long offset, HostRun run);

    /// <summary>Makes whole grains read as zero without writing data; returns the bytes handled (0: write zeroes instead).</summary>
    public abstract long ZeroClusters(long offset, long length, bool unmap, bool hasBacking);

    /// <summary>Writes metadata back and flushes the file.</summary>
    public abstract void Flush();

    /// <summary>Releases in-memory caches (the driver disposes the files).</summary>
    public virtual void Dispose() { }
}

/// <summary>A flat extent: guest bytes stored in order from <c>flatOffset</c> of the file. Always writable in place.</summary>
internal sealed class VmdkFlatExtent : VmdkExtent
{
    private readonly long _hostStart;

    public VmdkFlatExtent(IStorage storage, long guestStart, long length, long hostStart) : base(storage, guestStart, length)
        => _hostStart = hostStart;

    /// <inheritdoc/>
    public override Mapping Map(long offset, long maxLength)
    {
        long host = _hostStart + offset;
        long length = Math.Min(maxLength, Length - offset);
        long fileLength = Storage.Length;
        if (host >= fileLength) return new Mapping(ExtentKind.Zero, length, Storage, host, Writable: true);
        bool known = Storage.TryGetExtent(host, out bool isData, out long run);
        if (run > 0) length = Math.Min(length, run);
        bool hole = known && !isData;
        return new Mapping(hole ? ExtentKind.Zero : ExtentKind.Data, length, Storage, host, Writable: true);
    }

    /// <inheritdoc/>
    public override void ReadCompressed(long offset, Span<byte> destination)
        => throw new InvalidOperationException("flat extents have no compressed runs");

    /// <inheritdoc/>
    public override HostRun Allocate(long offset, long length) => new(Storage, _hostStart + offset, Math.Min(length, Length - offset));

    /// <inheritdoc/>
    public override void Link(long offset, HostRun run) { }

    /// <inheritdoc/>
    public override long ZeroClusters(long offset, long length, bool unmap, bool hasBacking)
    {
        long n = Math.Min(length, Length - offset);
        if (unmap) Storage.Discard(_hostStart + offset, n);
        else Storage.WriteZeroes(_hostStart + offset, n);
        return n;
    }

    /// <inheritdoc/>
    public override void Flush() => Storage.Flush();
}
