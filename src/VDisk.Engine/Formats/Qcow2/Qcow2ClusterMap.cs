// qcow2 guest-to-host mapping (qcow2.rst "Cluster mapping"): one L1 table (the active one, or a snapshot's for a
// read-only view) over the shared L2 cache; lookups that return whole contiguous runs; entry updates with
// copy-on-write of L2 tables shared with snapshots. Every update declares its write order before it changes
// anything: the L2 table waits for the counts and the guest data of clusters it starts pointing at, the L1
// table for a new L2 table, and counts that drop wait for the table that stopped pointing at the cluster.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>The mapping of one L1 table. Not thread-safe: the image holds its lock.</summary>
internal sealed class Qcow2ClusterMap
{
    private readonly string _path;
    private readonly int _version;
    private readonly Qcow2Geometry _geometry;
    private readonly Qcow2MetadataCache _l2;
    private readonly Qcow2Refcounts? _refcounts;
    private readonly Qcow2OverlapGuard _guard;
    private readonly Qcow2DataWrites _data;
    private readonly bool _lazyRefcounts;

    /// <summary>A map over <paramref name="l1"/>; <paramref name="refcounts"/> is null for a read-only view (a snapshot), which refuses updates.</summary>
    public Qcow2ClusterMap(string path, Qcow2Header header, Qcow2PointerTable l1, Qcow2MetadataCache l2,
        Qcow2Refcounts? refcounts, Qcow2OverlapGuard guard, Qcow2DataWrites data)
    {
        _path = path;
        _version = header.Version;
        _geometry = new Qcow2Geometry(header.ClusterBits);
        _lazyRefcounts = header.LazyRefcounts;
        L1 = l1;
        _l2 = l2;
        _refcounts = refcounts;
        _guard = guard;
        _data = data;
    }

    /// <summary>The L1 table this map reads.</summary>
    public Qcow2PointerTable L1 { get; private set; }

    /// <summary>Switches to a relocated copy of the L1 table (after the header points at it).</summary>
    public void ReplaceL1(Qcow2PointerTable table) => L1 = table;

    /// <summary>The L2 entry of a guest cluster (0 when its L2 table is not allocated).</summary>
    public ulong Entry(long guestCluster)
    {
        var table = L2Of(_geometry.L1Index(guestCluster));
        return table.IsNone ? 0 : Read(_l2.Get(table), _geometry.L2Index(guestCluster));
    }

    /// <summary>The run starting at <paramref name="offset"/>, within one L2 table's reach; data lives in <paramref name="dataStorage"/>.</summary>
    public Mapping Map(GuestOffset offset, long maxLength, IStorage dataStorage)
    {
        long cluster = _geometry.GuestCluster(offset);
        long l1Index = _geometry.L1Index(cluster);
        int index = _geometry.L2Index(cluster);
        long reach = Math.Min(maxLength, (l1Index + 1) * _geometry.BytesPerL2 - offset.Value);
        var tableOffset = L2Of(l1Index);
        if (tableOffset.IsNone) return new Mapping(ExtentKind.Unallocated, reach);

        var table = _l2.Get(tableOffset);
        ulong first = Read(table, index);
        var kind = Classify(first, cluster);
        long length = _geometry.ClusterSize - _geometry.OffsetInCluster(offset);
        switch (kind)
        {
            case L2EntryKind.Compressed:
                return new Mapping(ExtentKind.Compressed, Math.Min(length, reach));
            case L2EntryKind.Normal:
            {
                var host = DataOffset(first, cluster);
                bool copied = (first & Qcow2Entries.Copied) != 0;
                for (int i = index + 1; length < reach && i < _geometry.L2Entries; i++)
                {
                    ulong next = Read(table, i);
                    if (Classify(next, cluster + i - index) != L2EntryKind.Normal
                        || (long)(next & Qcow2Entries.OffsetMask) != host.Value + ((long)(i - index) << _geometry.ClusterBits)
                        || ((next & Qcow2Entries.Copied) != 0) != copied)
                        break;
                    length += _geometry.ClusterSize;
                }
                bool writable = copied && (L1[l1Index] & Qcow2Entries.Copied) != 0 && _refcounts != null;
                return new Mapping(ExtentKind.Data, Math.Min(length, reach), dataStorage, host.Value + _geometry.OffsetInCluster(offset), writable);
            }
            default:
            {
                bool zero = kind != L2EntryKind.Unallocated;
                for (int i = index + 1; length < reach && i < _geometry.L2Entries; i++)
                {
                    var next = Classify(Read(table, i), cluster + i - index);
                    if ((next is L2EntryKind.Zero or L2EntryKind.ZeroAllocated) != zero || next is L2EntryKind.Normal or L2EntryKind.Compressed)
                        break;
                    length += _geometry.ClusterSize;
                }
                return new Mapping(zero ? ExtentKind.Zero : ExtentKind.Unallocated, Math.Min(length, reach));
            }
        }
    }

    /// <summary>
    /// Replaces the L2 entries of <paramref name="count"/> guest clusters from <paramref name="firstCluster"/> with
    /// <paramref name="newEntry"/>(guest cluster, old entry). Clusters the old entries used and the new ones do not
    /// lose a reference. Tables whose L1 entry is empty are skipped when the new entry of an empty one is 0.
    /// </summary>
    public void Update(long firstCluster, long count, Func<long, ulong, ulong> newEntry)
    {
        var refcounts = _refcounts ?? throw new InvalidOperationException("a snapshot view cannot be changed");
        long cluster = firstCluster, end = firstCluster + count;
        while (cluster < end)
        {
            long l1Index = _geometry.L1Index(cluster);
            long tableEnd = Math.Min(end, (l1Index + 1) << _geometry.L2Bits);
            if (L2Of(l1Index).IsNone && newEntry(cluster, 0) == 0)
            {
                cluster = tableEnd;
                continue;
            }
            var tableOffset = WritableL2(l1Index, refcounts);
            bool ordered = false;
            for (; cluster < tableEnd; cluster++)
            {
                var table = _l2.Get(tableOffset);
                int index = _geometry.L2Index(cluster);
                ulong old = Read(table, index);
                ulong updated = newEntry(cluster, old);
                if (updated == old) continue;
                if (!ordered && AddsReference(old, updated))
                {
                    if (!_lazyRefcounts) refcounts.MustPrecede(_l2);
                    _l2.DependOn(_data);
                    ordered = true;
                    table = _l2.Get(tableOffset);
                }
                Write(table, index, updated);
                _l2.MarkDirty(tableOffset);
                Release(old, updated, refcounts);
            }
        }
    }

    /// <summary>Host offsets of all allocated L2 tables.</summary>
    public IEnumerable<HostOffset> L2Tables() => L1.Targets(_geometry, _path).Select(t => t.Target);

    // The L2 table for an L1 index, allocated or copied (when shared with a snapshot) so it may be changed.
    private HostOffset WritableL2(long l1Index, Qcow2Refcounts refcounts)
    {
        var current = L2Of(l1Index);
        if (!current.IsNone && (L1[l1Index] & Qcow2Entries.Copied) != 0) return current;
        var (offset, _) = refcounts.Allocate(1);
        _guard.SetL2Table(offset, true);
        if (current.IsNone) _l2.Create(offset);
        else _l2.Create(offset, _l2.Get(current));
        if (!_lazyRefcounts) refcounts.MustPrecede(_l2);
        L1.DependOn(_l2);
        L1.Set(l1Index, (ulong)offset.Value | Qcow2Entries.Copied);
        if (!current.IsNone)
        {
            _guard.SetL2Table(current, false);
            refcounts.Decrement(current, _geometry.ClusterSize, dereferencedBy: L1);
        }
        return offset;
    }

    // True when the new entry points at host space the old one did not.
    private bool AddsReference(ulong old, ulong updated)
    {
        var (newStart, _) = HostExtent(updated);
        return !newStart.IsNone && newStart != HostExtent(old).Start;
    }

    private void Release(ulong old, ulong updated, Qcow2Refcounts refcounts)
    {
        var (start, length) = HostExtent(old);
        if (start.IsNone) return;
        var (newStart, newLength) = HostExtent(updated);
        if (newStart == start && newLength == length) return;
        if (_guard.Find(start, length, Qcow2MetadataKind.None) is var hit and not Qcow2MetadataKind.None)
            throw VDiskException.Corrupt(_path, $"an L2 entry points into metadata ({hit}) at host offset 0x{start.Value:x}.");
        refcounts.Decrement(start, length, dereferencedBy: _l2);
    }

    // The host bytes an L2 entry holds a reference to (standard clusters, allocated zero clusters, compressed data).
    internal (HostOffset Start, long Length) HostExtent(ulong entry)
    {
        switch (Qcow2Entries.Classify(entry, _version))
        {
            case L2EntryKind.Normal:
            case L2EntryKind.ZeroAllocated:
                return (new HostOffset((long)(entry & Qcow2Entries.OffsetMask)), _geometry.ClusterSize);
            case L2EntryKind.Compressed:
                var (offset, length) = Qcow2Entries.CompressedExtent(entry, _geometry.ClusterBits);
                return (new HostOffset(offset), length);
            default:
                return (HostOffset.None, 0);
        }
    }

    // Bit 0 of a standard entry means "reads as zeroes" only in version 3; QEMU refuses it in a version 2 image.
    private L2EntryKind Classify(ulong entry, long guestCluster)
    {
        if (_version < 3 && (entry & (Qcow2Entries.ZeroFlag | Qcow2Entries.CompressedFlag)) == Qcow2Entries.ZeroFlag)
            throw VDiskException.Corrupt(_path, $"the L2 entry for guest offset 0x{guestCluster << _geometry.ClusterBits:x} has the zero flag, which a version 2 image cannot have.");
        return Qcow2Entries.Classify(entry, _version);
    }

    private HostOffset L2Of(long l1Index) => l1Index < L1.Count ? L1.TargetOf(l1Index, _geometry, _path) : HostOffset.None;

    private HostOffset DataOffset(ulong entry, long guestCluster)
    {
        var offset = new HostOffset((long)(entry & Qcow2Entries.OffsetMask));
        if (!_geometry.IsAligned(offset))
            throw VDiskException.Corrupt(_path, $"L2 entry for guest offset 0x{guestCluster << _geometry.ClusterBits:x} points to unaligned host offset 0x{offset.Value:x}.");
        return offset;
    }

    internal static ulong Read(byte[] table, int index) => BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(index * 8));
    internal static void Write(byte[] table, int index, ulong value) => BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(index * 8), value);
}
