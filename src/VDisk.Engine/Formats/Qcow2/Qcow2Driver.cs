// The qcow2 driver (qcow2.rst): opening with feature checks, mapping answers, allocation and linking
// in the safe write order (refcounts, barrier, L2, L1, barrier, then frees), zero clusters,
// compressed reads, and the dirty bit for lazy refcounts.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>A qcow2 image, version 2 or 3. Thread-safe: metadata access is serialised, data I/O is not.</summary>
public sealed partial class Qcow2Driver : IImageDriver, ICompressedClusterWriter
{
    private const long L2CacheBytes = 32L << 20;
    private const long RefcountCacheBytes = 4L << 20;
    private readonly object _lock = new();
    private readonly Qcow2Header _header;
    private readonly Qcow2Refcounts _refcounts;
    private readonly Qcow2ClusterMap _map;
    private readonly bool _writable;
    private readonly IReadOnlyDictionary<(byte, byte), string> _featureNames;
    private readonly ThreadLocal<(long HostOffset, byte[]? Data)> _lastInflated = new(() => (-1, null));
    private readonly Qcow2Snapshot? _view;
    private bool _setDirtyBit;
    private bool _disposed;

    private Qcow2Driver(IStorage storage, Qcow2Header header, bool writable, Qcow2Snapshot? view, long l2CacheBytes, long refcountCacheBytes)
    {
        Storage = storage;
        _header = header;
        _writable = writable;
        _view = view;
        _featureNames = header.Extensions.FirstOrDefault(e => e.Type == Qcow2HeaderExtension.FeatureNameTableType)?.FeatureNames()
            ?? Qcow2Features.NameTable.ToDictionary(t => (t.Type, t.Bit), t => t.Name);
        _refcounts = new Qcow2Refcounts(storage, header, (int)(refcountCacheBytes / header.ClusterSize));
        _map = new Qcow2ClusterMap(storage, header, _refcounts, view?.L1TableOffset ?? header.L1TableOffset, view?.L1Size ?? header.L1Size,
            (int)(l2CacheBytes / header.ClusterSize), WriteBackBeforeL2);
    }

    /// <inheritdoc/>
    public ImageFormat Format => ImageFormat.Qcow2;
    /// <inheritdoc/>
    public IStorage Storage { get; }
    /// <inheritdoc/>
    public long VirtualSize => _view?.DiskSize ?? _header.Size;
    /// <inheritdoc/>
    public int ClusterSize => _header.ClusterSize;
    /// <summary>The parsed header (read-only use).</summary>
    public Qcow2Header Header => _header;

    /// <summary>The internal snapshots stored in the image, read from its snapshot table.</summary>
    public IReadOnlyList<Qcow2Snapshot> Snapshots
    {
        get { lock (_lock) return Qcow2SnapshotTable.Read(Storage, _header); }
    }

    /// <inheritdoc/>
    public BackingReference? Backing => _header.BackingFile is { } name
        ? new BackingReference(name, FormatProbe.ParseName(_header.BackingFormat))
        : null;

    /// <inheritdoc/>
    public FormatDetails Details => new()
    {
        Compat = _header.Compat,
        ClusterSize = _header.ClusterSize,
        RefcountBits = _header.RefcountBits,
        LazyRefcounts = _header.LazyRefcounts,
        CompressionType = _header.CompressionType,
        Dirty = _header.IsDirty,
        Corrupt = _header.IsCorrupt,
        Encrypted = IsEncrypted,
        SnapshotCount = _header.SnapshotCount,
        UnknownFeatures = Qcow2Features.Describe(_header.IncompatibleFeatures & ~Qcow2Features.KnownIncompatible, 0, _featureNames)
            .Concat(Qcow2Features.Describe(_header.CompatibleFeatures & ~Qcow2Features.LazyRefcounts, 1, _featureNames))
            .ToArray(),
    };

    private bool IsEncrypted => _header.CryptMethod != 0
        || _header.Extensions.Any(e => e.Type == Qcow2HeaderExtension.FullDiskEncryptionType);

    /// <summary>Opens a qcow2 image; the driver takes ownership of <paramref name="storage"/>.</summary>
    public static Qcow2Driver Open(IStorage storage, bool writable) => Open(storage, writable, null, L2CacheBytes, RefcountCacheBytes);

    /// <summary>Opens the state of an internal snapshot (by id or name), read-only.</summary>
    public static Qcow2Driver OpenSnapshot(IStorage storage, string idOrName) => Open(storage, false, idOrName, L2CacheBytes, RefcountCacheBytes);

    /// <summary>Opens with explicit metadata cache budgets (tests use tiny ones to exercise eviction).</summary>
    internal static Qcow2Driver Open(IStorage storage, bool writable, long l2CacheBytes, long refcountCacheBytes)
        => Open(storage, writable, null, l2CacheBytes, refcountCacheBytes);

    private static Qcow2Driver Open(IStorage storage, bool writable, string? snapshot, long l2CacheBytes, long refcountCacheBytes)
    {
        var first = new byte[4096];
        storage.ReadAt(0, first);
        int clusterBits = (int)Math.Clamp(Qcow2Header.U32(first, Qcow2Header.ClusterBitsOffset), 9, 21);
        var cluster0 = new byte[Math.Max(first.Length, 1 << clusterBits)];
        storage.ReadAt(0, cluster0);
        var header = Qcow2Header.Parse(cluster0, storage.Name);
        CheckFeatures(header, storage.Name, writable);
        var view = snapshot is null ? null : Qcow2SnapshotTable.Find(Qcow2SnapshotTable.Read(storage, header), snapshot, storage.Name);
        var driver = new Qcow2Driver(storage, header, writable && view is null, view, l2CacheBytes, refcountCacheBytes);
        if (writable) driver.PrepareForWriting();
        return driver;
    }

    /// <inheritdoc/>
    public Mapping Map(long guestOffset, long maxLength)
    {
        if (IsEncrypted) throw VDiskException.Unsupported(Storage.Name, "encrypted qcow2 images are not supported.");
        lock (_lock) return _map.Map(guestOffset, maxLength);
    }

    /// <inheritdoc/>
    public void ReadCompressed(long guestOffset, Span<byte> destination)
    {
        long cluster = guestOffset >> _header.ClusterBits;
        ulong entry;
        lock (_lock) entry = _map.Entry(cluster);
        var (host, length) = Qcow2Entries.CompressedExtent(entry, _header.ClusterBits);
        var cached = _lastInflated.Value;
        if (cached.HostOffset != host || cached.Data is null)
        {
            var compressed = new byte[Math.Min(length, 2 * ClusterSize + 512)];
            Storage.ReadAt(host, compressed);
            var data = cached.Data ?? new byte[ClusterSize];
            Qcow2Compression.Decompress(_header.CompressionType, compressed, data, Storage.Name, host);
            _lastInflated.Value = cached = (host, data);
        }
        cached.Data.AsSpan((int)(guestOffset & (ClusterSize - 1)), destination.Length).CopyTo(destination);
    }

    /// <inheritdoc/>
    public HostRun Allocate(long guestOffset, long length)
    {
        lock (_lock)
        {
            long clusters = Math.Max(1, (length + ClusterSize - 1) / ClusterSize);
            var (offset, count) = _refcounts.Allocate(clusters);
            return new HostRun(Storage, offset, count * ClusterSize);
        }
    }

    /// <inheritdoc/>
    public void Link(long guestOffset, HostRun run)
    {
        lock (_lock)
        {
            long first = guestOffset >> _header.ClusterBits;
            _map.Update(first, run.Length / ClusterSize,
                (cluster, _) => (ulong)(run.Offset + ((cluster - first) << _header.ClusterBits)) | Qcow2Entries.Copied);
        }
    }

    /// <inheritdoc/>
    public long ZeroClusters(long guestOffset, long length, bool unmap)
    {
        lock (_lock)
        {
            bool hasBacking = _header.BackingFile != null;
            if (_header.Version < 3 && hasBacking) return 0; // v2 cannot say "zero" over a backing file
            long first = guestOffset >> _header.ClusterBits;
            long count = (length + ClusterSize - 1) / ClusterSize;
            _map.Update(first, count, (_, old) => ZeroEntry(old, unmap, hasBacking));
            return length;
        }
    }

    private ulong ZeroEntry(ulong old, bool unmap, bool hasBacking)
    {
        if (_header.Version < 3) return 0;
        var kind = Qcow2Entries.Classify(old, _header.Version);
        bool inPlace = (old & Qcow2Entries.Copied) != 0;
        if (!unmap && inPlace && kind is L2EntryKind.Normal or L2EntryKind.ZeroAllocated)
            return (old & Qcow2Entries.OffsetMask) | Qcow2Entries.Copied | Qcow2Entries.ZeroFlag;
        return hasBacking ? Qcow2Entries.ZeroFlag : 0;
    }

    /// <inheritdoc/>
    public void Flush()
    {
        lock (_lock)
        {
            WriteMetadata();
            Storage.Flush();
        }
    }

    /// <summary>Reserves space for the whole disk as qemu-img's preallocation modes do (metadata, falloc, full).</summary>
    internal void Preallocate(Preallocation mode, IProgress<long>? progress, CancellationToken cancel)
    {
        if (mode == Preallocation.Off) return;
        long total = (VirtualSize + ClusterSize - 1) / ClusterSize * ClusterSize;
        for (long guest = 0; guest < total;)
        {
            cancel.ThrowIfCancellationRequested();
            var run = Allocate(guest, Math.Min(total - guest, 256L << 20));
            if (mode == Preallocation.Falloc) Storage.Preallocate(run.Offset, run.Length);
            if (mode == Preallocation.Full) Raw.RawDriver.WriteZeroFill(Storage, run.Offset, run.Length, cancel);
            Link(guest, run);
            guest += run.Length;
            progress?.Report(guest);
            if (mode == Preallocation.Metadata && run.Offset + run.Length > Storage.Length) Storage.SetLength(run.Offset + run.Length);
        }
        Flush();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            if (_writable)
            {
                lock (_lock)
                {
                    WriteMetadata();
                    Barrier();
                    if (_setDirtyBit) WriteIncompatibleFeatures(_header.IncompatibleFeatures & ~Qcow2Features.Dirty);
                    Storage.Flush();
                }
            }
        }
        finally
        {
            _lastInflated.Dispose();
            foreach (var compressor in _zstd.Values) compressor.Dispose();
            _zstd.Dispose();
            Storage.Dispose();
        }
    }

    // Refcounts reach disk before any L2 table that points at their clusters.
    private void WriteBackBeforeL2()
    {
        _refcounts.WriteBack();
        Barrier();
        _map.WriteBackL2();
    }

    // The whole safe order: refcounts, barrier, L2 tables, L1, barrier, then the queued frees.
    private void WriteMetadata()
    {
        _refcounts.WriteBack();
        if (_map.HasDirty)
        {
            Barrier();
            _map.WriteBackL2();
            _map.WriteBackL1();
        }
        if (_refcounts.HasPendingFrees)
        {
            Barrier();
            _refcounts.ApplyPendingFrees();
            _refcounts.WriteBack();
        }
    }

    private void Barrier()
    {
        if (!_header.LazyRefcounts) Storage.Flush();
    }

    private void PrepareForWriting()
    {
        if (_header.Version >= 3 && _header.AutoclearFeatures != 0)
        {
            // Autoclear features we do not maintain (bitmaps) must be cleared by a writer that does not understand them.
            _header.AutoclearFeatures = 0;
            Span<byte> zero = stackalloc byte[8];
            Storage.WriteAt(Qcow2Header.AutoclearOffset, zero);
        }
        if (_header.LazyRefcounts && !_header.IsDirty)
        {
            WriteIncompatibleFeatures(_header.IncompatibleFeatures | Qcow2Features.Dirty);
            Storage.Flush();
            _setDirtyBit = true;
        }
    }

    private void WriteIncompatibleFeatures(ulong value)
    {
        _header.IncompatibleFeatures = value;
        Span<byte> field = stackalloc byte[8];
        Qcow2Header.PutU64(field, 0, value);
        Storage.WriteAt(Qcow2Header.IncompatibleOffset, field);
    }

    private static void CheckFeatures(Qcow2Header header, string path, bool writable)
    {
        ulong unknown = header.IncompatibleFeatures & ~Qcow2Features.KnownIncompatible;
        if (unknown != 0)
        {
            var names = header.Extensions.FirstOrDefault(e => e.Type == Qcow2HeaderExtension.FeatureNameTableType)?.FeatureNames()
                ?? new Dictionary<(byte, byte), string>();
            throw VDiskException.Unsupported(path, $"qcow2 incompatible feature(s) not supported: {string.Join(", ", Qcow2Features.Describe(unknown, 0, names))}.");
        }
        if ((header.IncompatibleFeatures & Qcow2Features.ExternalDataFile) != 0)
            throw VDiskException.Unsupported(path, "qcow2 images with an external data file are not supported yet.");
        if ((header.IncompatibleFeatures & Qcow2Features.ExtendedL2) != 0)
            throw VDiskException.Unsupported(path, "qcow2 images with extended L2 entries (subclusters) are not supported yet.");
        if (!writable) return;
        if (header.IsCorrupt)
            throw new VDiskException(VDiskErrorKind.ReadOnly, path, $"{path}: the image is marked corrupt; it can only be opened read-only until it is repaired ('qemu-img check -r all').");
        if (header.IsDirty)
            throw new VDiskException(VDiskErrorKind.Corrupt, path, $"{path}: the image was not closed cleanly (dirty bit set with lazy refcounts); its refcounts must be repaired ('qemu-img check -r all') before it is written.");
        if (header.CryptMethod != 0)
            throw VDiskException.Unsupported(path, "encrypted qcow2 images are not supported.");
    }
}
