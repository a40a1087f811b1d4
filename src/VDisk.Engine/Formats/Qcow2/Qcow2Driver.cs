// The qcow2 driver (qcow2.rst): a thin adapter that answers the engine's mapping questions from the metadata
// core (Qcow2Image), checks features on open, reads compressed clusters, and hands out encrypted images' data
// through their cipher (Qcow2Encryption). It changes no metadata itself.
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>A qcow2 image, version 2 or 3. Thread-safe: metadata access is serialised, data I/O is not.</summary>
public sealed partial class Qcow2Driver : IImageDriver, ICompressedClusterWriter
{
    private readonly Qcow2Image _image;
    private readonly Qcow2ClusterMap _map;
    private readonly Qcow2Snapshot? _view;
    private readonly Qcow2Encryption? _encryption;
    private readonly IReadOnlyDictionary<(byte, byte), string> _featureNames;
    private readonly ThreadLocal<(long HostOffset, byte[]? Data)> _lastInflated = new(() => (-1, null));
    private bool _disposed;

    private Qcow2Driver(Qcow2Image image, Qcow2Snapshot? view, Qcow2Encryption? encryption)
    {
        _image = image;
        _view = view;
        _encryption = encryption;
        _map = view is null ? image.Active : image.SnapshotView(view);
        _featureNames = Header.Extensions.FirstOrDefault(e => e.Type == Qcow2HeaderExtension.FeatureNameTableType)?.FeatureNames()
            ?? Qcow2Features.NameTable.ToDictionary(t => (t.Type, t.Bit), t => t.Name);
    }

    /// <inheritdoc/>
    public ImageFormat Format => ImageFormat.Qcow2;
    /// <inheritdoc/>
    public IStorage Storage => _image.Storage;
    /// <inheritdoc/>
    public long VirtualSize => _view?.DiskSize ?? Header.Size;
    /// <inheritdoc/>
    public int ClusterSize => Header.ClusterSize;
    /// <summary>The parsed header (read-only use).</summary>
    public Qcow2Header Header => _image.Header;
    /// <summary>The metadata core (for tests and the operations built on it).</summary>
    internal Qcow2Image Image => _image;

    /// <summary>The internal snapshots stored in the image, read from its snapshot table.</summary>
    public IReadOnlyList<Qcow2Snapshot> Snapshots => _image.Snapshots();

    /// <inheritdoc/>
    public BackingReference? Backing => Header.BackingFile is { } name
        ? new BackingReference(name, FormatProbe.ParseName(Header.BackingFormat))
        : null;

    /// <inheritdoc/>
    public FormatDetails Details => new()
    {
        Compat = Header.Compat,
        ClusterSize = Header.ClusterSize,
        RefcountBits = Header.RefcountBits,
        LazyRefcounts = Header.LazyRefcounts,
        CompressionType = Header.CompressionType,
        Dirty = Header.IsDirty,
        Corrupt = Header.IsCorrupt,
        Encrypted = IsEncrypted,
        EncryptionFormat = _encryption?.FormatName,
        Cipher = _encryption?.Luks?.Spec.ToString(),
        ActiveKeySlots = _encryption?.Luks?.Slots.Where(slot => slot.Active).Select(slot => slot.Index).ToArray() ?? Array.Empty<int>(),
        SnapshotCount = Header.SnapshotCount,
        Bitmaps = BitmapsOrNone(),
        UnknownFeatures = Qcow2Features.Describe(Header.IncompatibleFeatures & ~Qcow2Features.KnownIncompatible, 0, _featureNames)
            .Concat(Qcow2Features.Describe(Header.CompatibleFeatures & ~Qcow2Features.LazyRefcounts, 1, _featureNames))
            .ToArray(),
    };

    /// <summary>The persistent dirty bitmaps (see <see cref="Qcow2Image.Bitmaps"/>); a broken bitmap directory is an error.</summary>
    public IReadOnlyList<Qcow2BitmapInfo> Bitmaps => _image.Bitmaps();

    /// <summary>
    /// The guest ranges the consistent bitmap <paramref name="name"/> marks dirty, in order and merged, clipped to the
    /// virtual size; read lazily. A missing bitmap, or one that cannot be trusted, is an error.
    /// </summary>
    public IEnumerable<DirtyRange> ReadBitmap(string name) => _image.DirtyRanges(name);

    // For Get-VDisk: a directory that cannot be read shows no bitmaps (and none of them is trusted anywhere).
    private IReadOnlyList<Qcow2BitmapInfo> BitmapsOrNone()
    {
        try { return _image.Bitmaps(); }
        catch (VDiskException) { return Array.Empty<Qcow2BitmapInfo>(); }
    }

    private bool IsEncrypted => _encryption != null;

    /// <summary>The encryption state (null when the image is not encrypted).</summary>
    internal Qcow2Encryption? Encryption => _encryption;

    /// <summary>True when the image is encrypted and was opened without the passphrase that unlocks it: its data cannot be read.</summary>
    public bool IsLocked => _encryption is { Unlocked: false };

    /// <summary>Opens a qcow2 image; the driver takes ownership of <paramref name="storage"/>.</summary>
    public static Qcow2Driver Open(IStorage storage, bool writable) => Open(storage, writable, null, Qcow2CacheBudget.Default);

    /// <summary>Opens an image just created encrypted with <paramref name="unlocked"/> (its data cipher, which the driver then owns).</summary>
    internal static Qcow2Driver Open(IStorage storage, bool writable, SectorCipher? unlocked)
        => Open(storage, writable, null, Qcow2CacheBudget.Default, unlocked);

    /// <summary>Opens the state of an internal snapshot (by id or name), read-only.</summary>
    public static Qcow2Driver OpenSnapshot(IStorage storage, string idOrName) => Open(storage, false, idOrName, Qcow2CacheBudget.Default);

    /// <summary>Opens with explicit metadata cache budgets (tests use tiny ones to exercise eviction).</summary>
    internal static Qcow2Driver Open(IStorage storage, bool writable, long l2CacheBytes, long refcountCacheBytes)
        => Open(storage, writable, null, new Qcow2CacheBudget(l2CacheBytes, refcountCacheBytes));

    private static Qcow2Driver Open(IStorage storage, bool writable, string? snapshot, Qcow2CacheBudget budget, SectorCipher? unlocked = null)
    {
        Qcow2Image? image = null;
        try
        {
            image = Qcow2Image.Open(storage, writable && snapshot is null, budget, h => CheckFeatures(h, storage.Name, writable && snapshot is null));
            var view = snapshot is null ? null : image.FindSnapshot(snapshot);
            var encryption = Qcow2Encryption.Open(image.Header, image.Storage, image.DataStorage, storage.Name, unlocked);
            return new Qcow2Driver(image, view, encryption);
        }
        catch
        {
            unlocked?.Dispose();
            image?.Dispose();
            throw;
        }
    }

    /// <inheritdoc/>
    public Mapping Map(long guestOffset, long maxLength)
    {
        var mapping = _image.Map(_map, new GuestOffset(guestOffset), maxLength);
        return _encryption is null || mapping.Storage is null
            ? mapping
            : mapping with { Storage = _encryption.MappingView(mapping.Storage, guestOffset - mapping.HostOffset) };
    }

    /// <inheritdoc/>
    public void ReadCompressed(long guestOffset, Span<byte> destination)
    {
        ulong entry = _image.Entry(_map, guestOffset >> Header.ClusterBits);
        var (host, length) = Qcow2Entries.CompressedExtent(entry, Header.ClusterBits);
        var cached = _lastInflated.Value;
        if (cached.HostOffset != host || cached.Data is null)
        {
            var compressed = new byte[Math.Min(length, 2 * ClusterSize + 512)];
            Storage.ReadAt(host, compressed);
            var data = cached.Data ?? new byte[ClusterSize];
            Qcow2Compression.Decompress(Header.CompressionType, compressed, data, Storage.Name, host);
            _lastInflated.Value = cached = (host, data);
        }
        cached.Data.AsSpan((int)(guestOffset & (ClusterSize - 1)), destination.Length).CopyTo(destination);
    }

    /// <inheritdoc/>
    public HostRun Allocate(long guestOffset, long length)
    {
        long clusters = Math.Max(1, (length + ClusterSize - 1) / ClusterSize);
        var data = _encryption?.DataView(_image.DataStorage, 0) ?? _image.DataStorage; // checks the key before allocating
        var (offset, count) = _image.AllocateClusters(clusters);
        return new HostRun(data, offset.Value, count * ClusterSize);
    }

    /// <inheritdoc/>
    public void Link(long guestOffset, HostRun run)
    {
        long first = guestOffset >> Header.ClusterBits;
        int bits = Header.ClusterBits;
        _image.UpdateEntries(first, run.Length / ClusterSize,
            (cluster, _) => (ulong)(run.Offset + ((cluster - first) << bits)) | Qcow2Entries.Copied);
    }

    /// <inheritdoc/>
    public long ZeroClusters(long guestOffset, long length, bool unmap)
    {
        int version = Header.Version;
        bool hasBacking = Header.BackingFile != null;
        if (version < 3 && hasBacking) return 0; // v2 cannot say "zero" over a backing file
        long first = guestOffset >> Header.ClusterBits;
        long count = (length + ClusterSize - 1) / ClusterSize;
        _image.UpdateEntries(first, count, (_, old) => ZeroEntry(old, version, unmap, hasBacking));
        return length;
    }

    private static ulong ZeroEntry(ulong old, int version, bool unmap, bool hasBacking)
    {
        if (version < 3) return 0;
        var kind = Qcow2Entries.Classify(old, version);
        bool inPlace = (old & Qcow2Entries.Copied) != 0;
        if (!unmap && inPlace && kind is L2EntryKind.Normal or L2EntryKind.ZeroAllocated)
            return (old & Qcow2Entries.OffsetMask) | Qcow2Entries.Copied | Qcow2Entries.ZeroFlag;
        return hasBacking ? Qcow2Entries.ZeroFlag : 0;
    }

    /// <inheritdoc/>
    public void Flush() => _image.Flush();

    /// <summary>Reserves space for the whole disk as qemu-img's preallocation modes do (metadata, falloc, full).</summary>
    internal void Preallocate(Preallocation mode, IProgress<long>? progress, CancellationToken cancel)
    {
        PreallocateRange(mode, 0, VirtualSize, progress, cancel);
        Flush();
    }

    /// <summary>
    /// Resizes the disk (see <see cref="Qcow2Image.Grow"/> and <see cref="Qcow2Image.Shrink"/>). Growing zeroes what a
    /// writable last cluster holds past the old end (QEMU leaves it, so a shrink and a grow can bring old bytes back),
    /// preallocates the clusters wholly past the old end with <paramref name="mode"/>, or, with
    /// <paramref name="zeroNewClusters"/> and no preallocation, makes them read as zeroes over a larger backing file.
    /// </summary>
    internal void Resize(long size, Preallocation mode, bool zeroNewClusters, IProgress<long>? progress, CancellationToken cancel)
    {
        long old = VirtualSize;
        if (size < old)
        {
            _image.Shrink(size);
            return;
        }
        long from = (old + ClusterSize - 1) / ClusterSize * ClusterSize; // a partly used last cluster keeps its mapping
        if (from > old && Map(from - ClusterSize, ClusterSize) is { Kind: ExtentKind.Data, Writable: true } last) // through the cipher when encrypted
            last.Storage!.WriteZeroes(last.HostOffset + ClusterSize - (from - old), from - old); // its bytes past the old end (made durable before the new size)
        _image.Grow(size, zeroNewClusters, mode == Preallocation.Off ? null : () => PreallocateRange(mode, from, size, progress, cancel));
    }

    // Allocates and links every cluster of [from, to) (from cluster-aligned): metadata only, with the host space
    // reserved (falloc), or written with zeroes (full). Clusters reused from inside the file may hold stale bytes, so
    // they are zeroed in every mode. Progress counts guest bytes from `from`.
    private void PreallocateRange(Preallocation mode, long from, long to, IProgress<long>? progress, CancellationToken cancel)
    {
        if (mode == Preallocation.Off) return;
        if (_encryption != null) mode = Preallocation.Full; // unwritten clusters would decrypt to noise: write enciphered zeroes
        long total = (to + ClusterSize - 1) / ClusterSize * ClusterSize;
        long fileEnd = Storage.Length;
        for (long guest = from; guest < total;)
        {
            cancel.ThrowIfCancellationRequested();
            var run = Allocate(guest, Math.Min(total - guest, 256L << 20));
            long reused = Math.Min(run.Length, fileEnd - run.Offset);
            if (reused > 0 && mode != Preallocation.Full) run.Storage.WriteZeroes(run.Offset, reused);
            if (mode == Preallocation.Falloc) run.Storage.Preallocate(run.Offset, run.Length);
            if (mode == Preallocation.Full) Raw.RawDriver.WriteZeroFill(run.Storage, run.Offset, run.Length, cancel);
            Link(guest, run);
            guest += run.Length;
            progress?.Report(guest - from);
            if (mode == Preallocation.Metadata && run.Offset + run.Length > Storage.Length) Storage.SetLength(run.Offset + run.Length);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            _image.Dispose();
        }
        finally
        {
            _encryption?.Dispose();
            _lastInflated.Dispose();
            foreach (var compressor in _zstd.Values) compressor.Dispose();
            _zstd.Dispose();
        }
    }

    /// <summary>Refuses features the engine cannot handle; a writable open also refuses dirty, corrupt and legacy-AES images.</summary>
    internal static void CheckFeatures(Qcow2Header header, string path, bool writable)
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
            throw new VDiskException(VDiskErrorKind.ReadOnly, path, $"{path}: the image is marked corrupt; it can only be opened read-only until it is repaired (Test-VDisk -Repair All, or qemu-img check -r all).");
        if (header.IsDirty)
            throw new VDiskException(VDiskErrorKind.Corrupt, path, $"{path}: the image was not closed cleanly (the dirty bit is set: lazy refcounts, or a snapshot operation cut short); its refcounts must be repaired (Test-VDisk -Repair All, or qemu-img check -r all) before it is written.");
        if (header.CryptMethod == Qcow2Encryption.AesMethod)
            throw new VDiskException(VDiskErrorKind.ReadOnly, path, $"{path} is encrypted with qcow2's legacy AES method, which (as in QEMU) is read-only: convert it (Convert-VDisk -Encrypt makes LUKS).");
    }
}
