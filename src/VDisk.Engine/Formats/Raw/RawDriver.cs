// The raw format: guest offset = host offset. Holes in a sparse host file map as zero runs, found
// with SEEK_DATA/SEEK_HOLE where the host supports it.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Raw;

/// <summary>A raw image: the file is the disk.</summary>
public sealed class RawDriver : IImageDriver
{
    private const int SectorSize = 512;

    /// <summary>
    /// Opens a raw image on <paramref name="storage"/>; the virtual size is the file length rounded up to a whole sector,
    /// as QEMU sees it (a 1000-byte file is a 1024-byte disk whose tail reads as zeroes).
    /// </summary>
    public RawDriver(IStorage storage)
    {
        Storage = storage;
        VirtualSize = (storage.Length + SectorSize - 1) / SectorSize * SectorSize;
    }

    /// <inheritdoc/>
    public ImageFormat Format => ImageFormat.Raw;
    /// <inheritdoc/>
    public IStorage Storage { get; }
    /// <inheritdoc/>
    public long VirtualSize { get; }
    /// <inheritdoc/>
    public int ClusterSize => SectorSize;
    /// <inheritdoc/>
    public BackingReference? Backing => null;
    /// <inheritdoc/>
    public FormatDetails Details => new();

    /// <summary>Creates a raw image of <paramref name="size"/> bytes with the given preallocation.</summary>
    public static void Create(IStorage storage, long size, Preallocation preallocation, IProgress<long>? progress = null, CancellationToken cancel = default)
    {
        switch (preallocation)
        {
            case Preallocation.Off:
                storage.SetLength(size);
                break;
            case Preallocation.Falloc:
                storage.SetLength(size);
                storage.Preallocate(0, size);
                break;
            case Preallocation.Full:
                WriteZeroFill(storage, 0, size, cancel, progress);
                break;
            default:
                throw VDiskException.Invalid(storage.Name, $"Preallocation '{preallocation}' is not valid for raw images (use Off, Falloc or Full).");
        }
    }

    /// <summary>
    /// Resizes a raw image to exactly <paramref name="size"/> bytes (qemu-img resize): the new area is sparse, reserved
    /// (Falloc) or written with zeroes (Full); shrinking cuts the file.
    /// </summary>
    public static void Resize(IStorage storage, long size, Preallocation preallocation, IProgress<long>? progress = null, CancellationToken cancel = default)
    {
        long old = storage.Length;
        if (preallocation == Preallocation.Metadata)
            throw VDiskException.Invalid(storage.Name, $"Preallocation '{preallocation}' is not valid for raw images (use Off, Falloc or Full).");
        if (size <= old || preallocation == Preallocation.Off) storage.SetLength(size);
        else if (preallocation == Preallocation.Falloc) storage.Preallocate(old, size - old);
        else WriteZeroFill(storage, old, size - old, cancel, progress);
        storage.Flush();
    }

    /// <inheritdoc/>
    public Mapping Map(long guestOffset, long maxLength)
    {
        bool known = Storage.TryGetExtent(guestOffset, out bool isData, out long length);
        if (length <= 0) (isData, length) = (true, maxLength); // the file shrank under us: reads as zero past its end
        if (known && !isData)
            return new Mapping(ExtentKind.Zero, Math.Min(length, maxLength), Storage, guestOffset, Writable: true);
        return new Mapping(ExtentKind.Data, Math.Min(length, maxLength), Storage, guestOffset, Writable: true);
    }

    /// <inheritdoc/>
    public Mapping MapForIo(long guestOffset, long maxLength) => new(ExtentKind.Data, maxLength, Storage, guestOffset, Writable: true);

    /// <inheritdoc/>
    public void ReadCompressed(long guestOffset, Span<byte> destination) => throw new InvalidOperationException("raw has no compressed runs");

    /// <inheritdoc/>
    public HostRun Allocate(long guestOffset, long length) => new(Storage, guestOffset, length);

    /// <inheritdoc/>
    public void Link(long guestOffset, HostRun run) { }

    /// <inheritdoc/>
    public long ZeroClusters(long guestOffset, long length, bool unmap)
    {
        long end = Math.Min(guestOffset + length, VirtualSize);
        if (unmap) Storage.Discard(guestOffset, end - guestOffset);
        else Storage.WriteZeroes(guestOffset, end - guestOffset);
        return length;
    }

    /// <inheritdoc/>
    public void Flush() => Storage.Flush();

    /// <inheritdoc/>
    public void Dispose()
    {
        try
        {
            if (Storage.CanWrite) Storage.Flush();
        }
        finally
        {
            Storage.Dispose();
        }
    }

    internal static void WriteZeroFill(IStorage storage, long offset, long length, CancellationToken cancel, IProgress<long>? progress = null)
    {
        var zeroes = new byte[1 << 20];
        for (long done = 0; done < length; done += zeroes.Length)
        {
            cancel.ThrowIfCancellationRequested();
            storage.WriteAt(offset + done, zeroes.AsSpan(0, (int)Math.Min(zeroes.Length, length - done)));
            progress?.Report(done);
        }
    }
}
