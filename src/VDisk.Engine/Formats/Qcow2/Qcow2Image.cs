// The qcow2 metadata core (DESIGN.md "The qcow2 metadata core"; qcow2.rst as a whole): one object per open
// image that owns the header (through its updater), the L1 tables, the L2 and refcount-block caches with
// their write-order dependencies, allocation and freeing, the overlap guard, the dirty and corrupt bits, and the
// persistent bitmaps (Qcow2Bitmaps.cs).
// Everything that changes qcow2 metadata goes through here; Qcow2Driver only answers mapping questions.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>Metadata cache budgets in bytes.</summary>
internal readonly record struct Qcow2CacheBudget(long L2Bytes, long RefcountBytes)
{
    public static readonly Qcow2CacheBudget Default = new(32L << 20, 4L << 20);
}

/// <summary>An open qcow2 image's metadata. Thread-safe: every method takes the image lock.</summary>
internal sealed partial class Qcow2Image : IDisposable
{
    private readonly object _lock = new();
    private readonly Qcow2HeaderUpdater _header;
    private readonly Qcow2WriteOrder _order;
    private readonly Qcow2OverlapGuard _guard;
    private readonly Qcow2DataWrites _data;
    private readonly Qcow2MetadataCache _l2;
    private readonly Qcow2Refcounts? _refcounts;
    private bool _setDirtyBit;
    private HostOffset _compressedCursor; // next free byte in the host cluster being packed, None when none
    private volatile bool _corrupt;
    private bool _closed;

    private Qcow2Image(IStorage storage, Qcow2Header header, byte[] cluster0, bool writable, Qcow2CacheBudget budget)
    {
        Storage = storage;
        Geometry = new Qcow2Geometry(header.ClusterBits);
        Writable = writable;
        _guard = new Qcow2OverlapGuard(Geometry, storage.Name) { Enabled = writable, OnViolation = MarkCorrupt };
        _order = new Qcow2WriteOrder(storage, _guard);
        _header = new Qcow2HeaderUpdater(_order, header, cluster0.Length == header.ClusterSize ? cluster0 : cluster0[..header.ClusterSize]);
        _data = new Qcow2DataWrites(_order);
        DataStorage = new Qcow2DataStorage(this);
        _l2 = new Qcow2MetadataCache(_order, "L2 tables", Qcow2MetadataKind.ActiveL2, storage, header.ClusterSize, (int)(budget.L2Bytes / header.ClusterSize));
        if (writable)
        {
            _refcounts = new Qcow2Refcounts(storage, _order, Geometry, _guard, _header, (int)(budget.RefcountBytes / header.ClusterSize), MakeFreesDurable);
            _refcounts.ClusterFreed += ClusterFreed;
        }
        var l1 = Qcow2PointerTable.Read(_order, "L1 table", Qcow2MetadataKind.ActiveL1, storage, new HostOffset(header.L1TableOffset), header.L1Size);
        Active = new Qcow2ClusterMap(storage.Name, header, l1, _l2, _refcounts, _guard, _data);
    }

    /// <summary>The image file.</summary>
    public IStorage Storage { get; }
    /// <summary>The image file as guest data may be written to it: every write passes the overlap check.</summary>
    public IStorage DataStorage { get; }
    public Qcow2Geometry Geometry { get; }
    public bool Writable { get; }
    /// <summary>The current header (read-only use; changes go through the updater).</summary>
    public Qcow2Header Header => _header.Header;
    /// <summary>The mapping of the active L1 table.</summary>
    public Qcow2ClusterMap Active { get; }
    /// <summary>The refcounts (writable images only).</summary>
    internal Qcow2Refcounts Refcounts => _refcounts ?? throw new InvalidOperationException("the image is open read-only");
    /// <summary>The header's one writer.</summary>
    internal Qcow2HeaderUpdater HeaderUpdater => _header;

    /// <summary>
    /// Opens the image in <paramref name="storage"/>: parses and validates the header and opens the tables. A writable
    /// image gets the dirty bit (lazy refcounts) and loses autoclear bits it does not maintain (all but bitmaps), both durably.
    /// </summary>
    public static Qcow2Image Open(IStorage storage, bool writable, Qcow2CacheBudget budget, Action<Qcow2Header>? check = null)
    {
        var first = new byte[4096];
        storage.ReadAt(0, first);
        int clusterBits = (int)Math.Clamp(Qcow2Header.U32(first, Qcow2Header.ClusterBitsOffset), 9, 21);
        var cluster0 = new byte[Math.Max(first.Length, 1 << clusterBits)];
        storage.ReadAt(0, cluster0);
        var header = Qcow2Header.Parse(cluster0, storage.Name);
        check?.Invoke(header);
        var image = new Qcow2Image(storage, header, cluster0, writable, budget);
        if (writable) image.PrepareForWriting();
        return image;
    }

    /// <summary>A read-only mapping of an internal snapshot's L1 table, over the shared L2 cache.</summary>
    public Qcow2ClusterMap SnapshotView(Qcow2Snapshot snapshot)
    {
        lock (_lock)
        {
            var l1 = Qcow2PointerTable.Read(_order, "snapshot L1 table", Qcow2MetadataKind.InactiveL1, Storage,
                new HostOffset(snapshot.L1TableOffset), snapshot.L1Size);
            return new Qcow2ClusterMap(Storage.Name, Header, l1, _l2, null, _guard, _data);
        }
    }

    /// <summary>The internal snapshots, from the snapshot table.</summary>
    public IReadOnlyList<Qcow2Snapshot> Snapshots()
    {
        lock (_lock) return Qcow2SnapshotTable.Read(Storage, Header);
    }

    /// <summary>The internal snapshot with id or name <paramref name="idOrName"/> (ids win), streaming the table.</summary>
    public Qcow2Snapshot FindSnapshot(string idOrName)
    {
        lock (_lock) return Qcow2SnapshotTable.Find(Storage, Header, idOrName);
    }

    /// <summary>Maps a guest run through <paramref name="map"/> (the active map or a snapshot view).</summary>
    public Mapping Map(Qcow2ClusterMap map, GuestOffset offset, long maxLength)
    {
        lock (_lock) return map.Map(offset, maxLength, DataStorage);
    }

    /// <summary>The L2 entry of a guest cluster in <paramref name="map"/>.</summary>
    public ulong Entry(Qcow2ClusterMap map, long guestCluster)
    {
        lock (_lock) return map.Entry(guestCluster);
    }

    /// <summary>Reserves a run of fresh clusters (refcount 1), at most <paramref name="maxClusters"/> long.</summary>
    public (HostOffset Offset, long Clusters) AllocateClusters(long maxClusters)
    {
        lock (_lock)
        {
            CheckWritable();
            return Refcounts.Allocate(maxClusters);
        }
    }

    /// <summary>Rewrites the active L2 entries of a guest cluster range (see <see cref="Qcow2ClusterMap.Update"/>).</summary>
    public void UpdateEntries(long firstCluster, long count, Func<long, ulong, ulong> newEntry)
    {
        lock (_lock)
        {
            CheckWritable();
            BeforeGuestChange();
            Active.Update(firstCluster, count, newEntry);
        }
    }

    /// <summary>
    /// Reserves <paramref name="length"/> bytes (less than a cluster) for a compressed payload, packed right after the
    /// previous one as qemu-img does: into the rest of the current host cluster, or on into the next one when that is
    /// free, else into a fresh cluster (also when the current one's refcount cannot grow). Every cluster a payload
    /// touches gains one reference.
    /// </summary>
    public HostOffset AllocateCompressed(int length)
    {
        lock (_lock)
        {
            CheckWritable();
            long cs = Geometry.ClusterSize;
            if (length <= 0 || length >= cs) throw new ArgumentOutOfRangeException(nameof(length), "a compressed payload must be shorter than a cluster");
            var start = _compressedCursor;
            if (start.IsNone || Refcounts.Get(Geometry.ClusterOf(start)) >= Refcounts.MaxRefcount)
            {
                start = Refcounts.Allocate(1).Offset; // nothing to continue, or its refcount is full (1- to 4-bit refcounts)
            }
            else if (start.Value % cs + length <= cs)
            {
                Refcounts.Increment(start, length);
            }
            else
            {
                var next = Refcounts.Allocate(1).Offset;
                if (next.Value == (start.Value / cs + 1) * cs) Refcounts.Increment(start, cs - start.Value % cs); // continue across
                else start = next; // not adjacent: leave the tail of the old cluster unused
            }
            var end = start + length;
            _compressedCursor = end.Value % cs == 0 ? HostOffset.None : end;
            return start;
        }
    }

    /// <summary>Writes every metadata change in order and makes it and all guest data durable.</summary>
    public void Flush()
    {
        lock (_lock)
        {
            if (!Writable || _corrupt) return;
            FlushLocked();
        }
    }

    private void FlushLocked()
    {
        WriteBackAll();
        _order.Barrier("flush");
        _refcounts!.ForgetFrees();
    }

    /// <summary>Flushes, clears the dirty bit this image set (after everything it vouches for is durable), and closes the file.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_closed) return;
            _closed = true;
            try
            {
                if (Writable && !_corrupt)
                {
                    WriteBackAll();
                    if (_setDirtyBit) _header.Update(h => h.IncompatibleFeatures &= ~Qcow2Features.Dirty);
                    _order.Barrier("close");
                }
            }
            finally
            {
                Storage.Dispose();
            }
        }
    }

    /// <summary>Sets the corrupt bit (as QEMU does on a metadata overlap) and refuses further writes.</summary>
    public void MarkCorrupt(string reason)
    {
        lock (_lock)
        {
            if (_corrupt) return;
            _corrupt = true;
            try { _header.Update(h => h.IncompatibleFeatures |= Qcow2Features.Corrupt); }
            catch (Exception e) when (e is IOException or VDiskException) { } // the original failure is what gets reported
        }
    }

    /// <summary>Checks a guest-data write against the metadata before it happens.</summary>
    internal void CheckDataWrite(long offset, long length)
    {
        if (_corrupt) throw CorruptError();
        BeforeGuestChange();
        _guard.CheckWrite(new HostOffset(offset), length, Qcow2MetadataKind.None);
    }

    /// <summary>Records a completed guest-data write for the next barrier.</summary>
    internal void NoteDataWrite() => _order.NoteDataWrite();

    // A freed cluster leaves the caches, so a stale copy is never written over its next owner, and compressed
    // payloads stop being packed into it.
    private void ClusterFreed(ClusterIndex cluster)
    {
        _l2.Forget(Geometry.OffsetOf(cluster));
        if (!_compressedCursor.IsNone && Geometry.ClusterOf(_compressedCursor) == cluster) _compressedCursor = HostOffset.None;
    }

    // Dependencies decide what must precede what; the tables go first so that, with lazy refcounts (whose counts
    // depend on nothing), the counts are the last thing written before the header that vouches for them.
    private void WriteBackAll()
    {
        _order.WriteBack(_l2);
        _order.WriteBack(Active.L1);
        _order.WriteBack(_refcounts!.Blocks);
        _order.WriteBack(_refcounts.Table);
    }

    // A freed cluster is about to be handed out again: every table that used to point at it must be durable first.
    private void MakeFreesDurable() => FlushLocked();

    private void CheckWritable()
    {
        if (!Writable) throw new VDiskException(VDiskErrorKind.ReadOnly, Storage.Name, $"{Storage.Name} is open read-only.");
        if (_corrupt) throw CorruptError();
    }

    private VDiskException CorruptError() => new(VDiskErrorKind.Corrupt, Storage.Name,
        $"{Storage.Name}: the image was marked corrupt after a metadata overlap; it must be repaired (Test-VDisk -Repair All, or qemu-img check -r all) before it is written again.");

    private void PrepareForWriting()
    {
        GuardMetadata();
        if (Header.Version >= 3 && (Header.AutoclearFeatures & ~Qcow2Features.Bitmaps) != 0)
            _header.Update(h => h.AutoclearFeatures &= Qcow2Features.Bitmaps); // a writer that does not maintain them must clear them
        GuardBitmaps(); // bitmaps are kept: marked in use before the first guest change (Qcow2Bitmaps.cs)
        if (Header.LazyRefcounts && !Header.IsDirty)
        {
            _header.Update(h => h.IncompatibleFeatures |= Qcow2Features.Dirty);
            _setDirtyBit = true;
        }
    }

    // Everything the overlap check knows about besides the refcount structures (which Qcow2Refcounts registers).
    private void GuardMetadata()
    {
        _guard.SetRanges(Qcow2MetadataKind.ActiveL1, new[] { (Active.L1.Offset, Active.L1.ByteLength) });
        foreach (var table in Active.L2Tables()) _guard.SetL2Table(table, true);
        if (Header.SnapshotCount == 0) return;
        var snapshots = Qcow2SnapshotTable.L1Tables(Storage, Header, out long tableBytes);
        _guard.SetRanges(Qcow2MetadataKind.SnapshotTable, new[] { (new HostOffset(Header.SnapshotsOffset), tableBytes) });
        _guard.SetRanges(Qcow2MetadataKind.InactiveL1, snapshots.Select(s => (new HostOffset(s.L1TableOffset), s.L1Size * 8L)));
    }
}
