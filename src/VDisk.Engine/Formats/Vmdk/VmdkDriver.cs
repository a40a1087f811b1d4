// The VMDK driver (VMware Virtual Disk Format 1.1; QEMU block/vmdk.c): routes mapping questions to the
// extent that holds each guest range, reports the createType and version, names the parent
// (parentFileNameHint) as a vmdk backing image, gives a new content ID (CID) when opened for writing, and
// stores compressed grains for streamOptimized images.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>A VMDK image: monolithicSparse, monolithicFlat, twoGbMaxExtentSparse/Flat or streamOptimized. Thread-safe for reads.</summary>
public sealed partial class VmdkDriver : IImageDriver, ICompressedClusterWriter
{
    private readonly VmdkLayout _layout;
    private readonly VmdkExtent[] _extents;
    private readonly long[] _starts;
    private readonly bool _writable;
    private bool _disposed;

    private readonly bool _confined;

    private VmdkDriver(IStorage storage, VmdkLayout layout, bool writable, bool confined)
    {
        _confined = confined;
        Storage = storage;
        _layout = layout;
        _extents = layout.Extents.ToArray();
        _starts = _extents.Select(e => e.GuestStart).ToArray();
        _writable = writable;
        VirtualSize = _extents.Sum(e => e.Length);
        ClusterSize = Sparse.Select(e => e.Header.GrainBytes).FirstOrDefault(VmdkSparseHeader.SectorSize);
        Files = new[] { storage }.Concat(layout.ExtentFiles.Where(f => !ReferenceEquals(f, storage))).ToArray();
    }

    /// <inheritdoc/>
    public ImageFormat Format => ImageFormat.Vmdk;
    /// <inheritdoc/>
    public IStorage Storage { get; }
    /// <inheritdoc/>
    public IReadOnlyList<IStorage> Files { get; }
    /// <inheritdoc/>
    public long VirtualSize { get; }
    /// <inheritdoc/>
    public int ClusterSize { get; }
    /// <summary>The createType (subformat) as qemu-img reports it.</summary>
    public string CreateType => _layout.CreateType;
    /// <summary>Content ID of this image.</summary>
    public uint Cid => _layout.Descriptor.Cid;
    /// <summary>Content ID the parent had when this image was created (0xffffffff: no parent).</summary>
    public uint ParentCid => _layout.Descriptor.ParentCid;

    /// <inheritdoc/>
    public BackingReference? Backing => _layout.Descriptor.ParentFileNameHint is { } parent
        ? new BackingReference(parent, ImageFormat.Vmdk) { ConfinedToFolder = _confined }
        : null;

    /// <inheritdoc/>
    public FormatDetails Details => new()
    {
        Subformat = CreateType,
        ClusterSize = Sparse.Any() ? ClusterSize : null,
        Compat = (Sparse.FirstOrDefault()?.Header.Version ?? (uint)_layout.Descriptor.Version).ToString(System.Globalization.CultureInfo.InvariantCulture),
        CompressionType = Sparse.Any(e => e.Header.IsCompressed) ? Core.CompressionType.Zlib : null,
    };

    /// <inheritdoc/>
    public int CompressionUnit => ClusterSize;

    private IEnumerable<VmdkSparseExtent> Sparse => _extents.OfType<VmdkSparseExtent>();

    /// <summary>The sparse extents (for the table check).</summary>
    internal IReadOnlyList<VmdkSparseExtent> SparseExtents => Sparse.ToList();
    private VmdkStreamWriter? Stream => Sparse.FirstOrDefault()?.Stream;

    /// <summary>
    /// Opens a VMDK image whose main file (a sparse file or a descriptor) is <paramref name="storage"/>; extent files
    /// named by a descriptor are opened beside it with the same cache mode. The driver owns all the files. With
    /// <paramref name="confined"/> (the format was probed) the extents and the parent must lie in the image's folder.
    /// </summary>
    public static VmdkDriver Open(IStorage storage, bool writable, bool confined = false)
    {
        var extentLocks = storage is FileStorage file ? file.LockMode : (ImageLockMode?)null;
        var layout = VmdkOpener.Open(storage, writable, (path, write) => OpenExtentFile(path, write, storage.CacheMode, extentLocks), confined);
        var driver = new VmdkDriver(storage, layout, writable, confined);
        if (!writable) return driver;
        try
        {
            driver.WriteNewCid();
            return driver;
        }
        catch
        {
            driver.DisposeExtents();
            throw;
        }
    }

    /// <inheritdoc/>
    public Mapping Map(long guestOffset, long maxLength)
    {
        var extent = Find(guestOffset);
        var m = extent.Map(guestOffset - extent.GuestStart, Math.Min(maxLength, VirtualSize - guestOffset));
        return m with { Writable = m.Writable && _writable };
    }

    /// <inheritdoc/>
    public void ReadCompressed(long guestOffset, Span<byte> destination)
    {
        var extent = Find(guestOffset);
        extent.ReadCompressed(guestOffset - extent.GuestStart, destination);
    }

    /// <inheritdoc/>
    public HostRun Allocate(long guestOffset, long length)
    {
        var extent = Find(guestOffset);
        return extent.Allocate(guestOffset - extent.GuestStart, Math.Min(length, extent.GuestStart + extent.Length - guestOffset));
    }

    /// <inheritdoc/>
    public void Link(long guestOffset, HostRun run)
    {
        var extent = Find(guestOffset);
        extent.Link(guestOffset - extent.GuestStart, run);
    }

    /// <inheritdoc/>
    public long ZeroClusters(long guestOffset, long length, bool unmap)
    {
        var extent = Find(guestOffset);
        long inExtent = Math.Min(length, extent.GuestStart + extent.Length - guestOffset);
        return extent.ZeroClusters(guestOffset - extent.GuestStart, inExtent, unmap, Backing != null);
    }

    /// <summary>
    /// Compresses one grain with zlib for a streamOptimized image (always succeeds; an all-zero grain gives an empty
    /// payload, which <see cref="WriteCompressed"/> skips). Other subformats cannot store compressed grains: false.
    /// </summary>
    public bool TryCompress(ReadOnlySpan<byte> unit, Span<byte> output, out int length)
    {
        length = 0;
        if (Stream is null) return false;
        if (unit.ContainsAnyExcept((byte)0)) length = VmdkGrainCompression.Compress(unit, output);
        return true;
    }

    /// <summary>Appends a grain compressed by <see cref="TryCompress"/>; grains must come in increasing guest order.</summary>
    public void WriteCompressed(long guestOffset, ReadOnlySpan<byte> payload)
    {
        var stream = Stream ?? throw VDiskException.Unsupported(Storage.Name, $"only streamOptimized VMDK images store compressed grains (this one is {CreateType}).");
        if (guestOffset % ClusterSize != 0 || guestOffset < 0 || guestOffset >= VirtualSize)
            throw VDiskException.Invalid(Storage.Name, $"{Storage.Name}: compressed grain offset {guestOffset} is not a grain boundary inside the disk.");
        if (payload.Length > 2 * ClusterSize)
            throw VDiskException.Invalid(Storage.Name, $"{Storage.Name}: a compressed grain of {payload.Length} bytes is larger than two grains.");
        stream.WriteCompressed(guestOffset / ClusterSize, payload);
    }

    /// <inheritdoc/>
    public void Flush()
    {
        foreach (var extent in _extents) extent.Flush();
        Storage.Flush();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            if (_writable) Flush();
        }
        finally
        {
            DisposeExtents();
            Storage.Dispose();
        }
    }

    private void DisposeExtents()
    {
        foreach (var extent in _extents) extent.Dispose();
        foreach (var file in _layout.ExtentFiles) file.Dispose();
    }

    private VmdkExtent Find(long guestOffset)
    {
        if (guestOffset < 0 || guestOffset >= VirtualSize)
            throw new ArgumentOutOfRangeException(nameof(guestOffset), guestOffset, $"outside the {VirtualSize}-byte disk");
        int i = Array.BinarySearch(_starts, guestOffset);
        return _extents[i >= 0 ? i : ~i - 1];
    }

    // QEMU gives an image a new CID on its first write after opening, so that children can tell their parent
    // changed. Writes into allocated grains and flat extents never reach the driver, so the CID changes here
    // when the image is opened for writing.
    private void WriteNewCid()
    {
        uint cid = VmdkDescriptor.NewCid(_layout.Descriptor.Cid);
        byte[] text = System.Text.Encoding.UTF8.GetBytes(_layout.Descriptor.WithCid(cid));
        if (_layout.DescriptorCapacity is { } capacity)
        {
            if (text.Length > capacity)
                throw VDiskException.Unsupported(Storage.Name, $"the embedded descriptor no longer fits its {capacity} bytes.");
            var region = new byte[capacity];
            text.CopyTo(region, 0);
            Storage.WriteAt(_layout.DescriptorOffset, region);
        }
        else
        {
            Storage.WriteAt(0, text);
            Storage.SetLength(text.Length);
        }
    }

    private static IStorage OpenExtentFile(string path, bool writable, CacheMode cache, ImageLockMode? locks)
    {
        try
        {
            var storage = FileStorage.Open(path, writable, cache, locks);
            return HostFileKind.Of(path) == HostFileType.BlockDevice ? new DeviceSizedStorage(storage, HostFileKind.BlockDeviceLength(path) ?? 0) : storage;
        }
        catch (UnauthorizedAccessException e)
        {
            throw new VDiskException(VDiskErrorKind.ReadOnly, path, $"{path}: permission denied ({e.Message}).", e);
        }
        catch (IOException e)
        {
            throw new VDiskException(VDiskErrorKind.IoError, path, $"{path}: {e.Message}", e);
        }
    }
}
