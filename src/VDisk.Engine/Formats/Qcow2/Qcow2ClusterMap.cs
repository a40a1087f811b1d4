// qcow2 guest-to-host mapping (qcow2.rst "Cluster mapping"): the L1 table (held in memory) and L2
// tables (bounded cache), lookups that return whole contiguous runs, and entry updates with
// copy-on-write of shared L2 tables. Replaced clusters are queued for freeing, never freed at once.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>L1/L2 tables of one qcow2 image. Not thread-safe: the driver holds its lock.</summary>
internal sealed class Qcow2ClusterMap
{
    private readonly IStorage _storage;
    private readonly Qcow2Header _header;
    private readonly Qcow2Refcounts _refcounts;
    private readonly TableCache _l2;
    private readonly ulong[] _l1;
    private readonly long _l1Offset;
    private readonly SortedSet<int> _dirtyL1Sectors = new();
    private readonly int _clusterBits;
    private readonly int _l2Bits;

    // l1Offset/l1Size: the header's L1 table, or an internal snapshot's (read-only views).
    public Qcow2ClusterMap(IStorage storage, Qcow2Header header, Qcow2Refcounts refcounts, long l1Offset, int l1Size,
        int l2CacheCapacity, Action writeBackBeforeL2)
    {
        _storage = storage;
        _header = header;
        _refcounts = refcounts;
        _clusterBits = header.ClusterBits;
        _l2Bits = header.ClusterBits - 3;
        _l2 = new TableCache(storage, header.ClusterSize, l2CacheCapacity, writeBackBeforeL2);
        _l1Offset = l1Offset;
        _l1 = ReadL1(l1Offset, l1Size);
    }

    private long ClusterSize => 1L << _clusterBits;
    private int L2Entries => 1 << _l2Bits;

    /// <summary>True when L1 or L2 changes wait to be written.</summary>
    public bool HasDirty => _l2.HasDirty || _dirtyL1Sectors.Count > 0;

    /// <summary>The L2 entry of a guest cluster (0 when its L2 table is not allocated).</summary>
    public ulong Entry(long guestCluster)
    {
        long l2Offset = L2Offset(guestCluster >> _l2Bits);
        return l2Offset == 0 ? 0 : Read(_l2.Get(l2Offset), (int)(guestCluster & (L2Entries - 1)));
    }

    /// <summary>The run starting at <paramref name="guestOffset"/>, within one L2 table's reach.</summary>
    public Mapping Map(long guestOffset, long maxLength)
    {
        long cluster = guestOffset >> _clusterBits;
        long l1Index = cluster >> _l2Bits;
        int index = (int)(cluster & (L2Entries - 1));
        long reach = Math.Min(maxLength, ((l1Index + 1) << (_l2Bits + _clusterBits)) - guestOffset);
        long l2Offset = L2Offset(l1Index);
        if (l2Offset == 0) return new Mapping(ExtentKind.Unallocated, reach);

        var table = _l2.Get(l2Offset);
        ulong first = Read(table, index);
        var kind = Qcow2Entries.Classify(first, _header.Version);
        long length = ClusterSize - (guestOffset & (ClusterSize - 1));
        switch (kind)
        {
            case L2EntryKind.Compressed:
                return new Mapping(ExtentKind.Compressed, Math.Min(length, reach));
            case L2EntryKind.Normal:
            {
                long host = DataOffset(first, cluster);
                bool writable = (first & Qcow2Entries.Copied) != 0 && (_l1[l1Index] & Qcow2Entries.Copied) != 0;
                for (int i = index + 1; length < reach && i < L2Entries; i++)
                {
                    ulong next = Read(table, i);
                    if (Qcow2Entries.Classify(next, _header.Version) != L2EntryKind.Normal
                        || (long)(next & Qcow2Entries.OffsetMask) != host + ((long)(i - index) << _clusterBits)
                        || ((next & Qcow2Entries.Copied) != 0) != ((first & Qcow2Entries.Copied) != 0))
                        break;
                    length += ClusterSize;
                }
                return new Mapping(ExtentKind.Data, Math.Min(length, reach), _storage, host + (guestOffset & (ClusterSize - 1)), writable);
            }
            default:
            {
                bool zero = kind != L2EntryKind.Unallocated;
                for (int i = index + 1; length < reach && i < L2Entries; i++)
                {
                    var next = Qcow2Entries.Classify(Read(table, i), _header.Version);
                    if ((next is L2EntryKind.Zero or L2EntryKind.ZeroAllocated) != zero || next is L2EntryKind.Normal or L2EntryKind.Compressed)
                        break;
                    length += ClusterSize;
                }
                return new Mapping(zero ? ExtentKind.Zero : ExtentKind.Unallocated, Math.Min(length, reach));
            }
        }
    }

    /// <summary>
    /// Replaces the L2 entries of <paramref name="count"/> guest clusters from <paramref name="firstCluster"/> with
    /// <paramref name="newEntry"/>(cluster, old entry). Clusters the old entries used and the new ones do not are
    /// queued for freeing. Tables whose L1 entry is empty are skipped when the new entry of an empty one is 0.
    /// </summary>
    public void Update(long firstCluster, long count, Func<long, ulong, ulong> newEntry)
    {
        long cluster = firstCluster, end = firstCluster + count;
        while (cluster < end)
        {
            long l1Index = cluster >> _l2Bits;
            long tableEnd = Math.Min(end, (l1Index + 1) << _l2Bits);
            if (L2Offset(l1Index) == 0 && newEntry(cluster, 0) == 0)
            {
                cluster = tableEnd;
                continue;
            }
            long l2Offset = WritableL2(l1Index);
            var table = _l2.Get(l2Offset);
            bool changed = false;
            for (; cluster < tableEnd; cluster++)
            {
                int index = (int)(cluster & (L2Entries - 1));
                ulong old = Read(table, index);
                ulong updated = newEntry(cluster, old);
                if (updated == old) continue;
                Write(table, index, updated);
                changed = true;
                ReleaseIfReplaced(old, updated);
            }
            if (changed) _l2.MarkDirty(l2Offset);
        }
    }

    /// <summary>Writes dirty L2 tables, then (after a barrier from the caller if needed) the dirty parts of L1.</summary>
    public void WriteBackL2() => _l2.WriteBack();

    /// <summary>Writes the dirty 512-byte sectors of the L1 table.</summary>
    public void WriteBackL1()
    {
        Span<byte> sector = stackalloc byte[512];
        foreach (int s in _dirtyL1Sectors)
        {
            int firstEntry = s * 64;
            int entries = Math.Min(64, _l1.Length - firstEntry);
            sector.Clear();
            for (int i = 0; i < entries; i++) BinaryPrimitives.WriteUInt64BigEndian(sector[(i * 8)..], _l1[firstEntry + i]);
            _storage.WriteAt(_l1Offset + s * 512L, sector[..(entries * 8)]);
        }
        _dirtyL1Sectors.Clear();
    }

    /// <summary>Host offsets of all allocated L2 tables.</summary>
    public IEnumerable<long> L2TableOffsets()
    {
        for (long i = 0; i < _l1.Length; i++)
            if (L2Offset(i) is var o and not 0) yield return o;
    }

    // The L2 table for an L1 index, allocated or copied (when shared with a snapshot) so it may be changed.
    private long WritableL2(long l1Index)
    {
        ulong l1Entry = _l1[l1Index];
        long current = L2Offset(l1Index);
        if (current != 0 && (l1Entry & Qcow2Entries.Copied) != 0) return current;
        var (offset, _) = _refcounts.Allocate(1);
        if (current == 0)
        {
            _l2.Create(offset);
        }
        else
        {
            _l2.Create(offset, _l2.Get(current));
            _refcounts.QueueFree(current, ClusterSize);
        }
        _l1[l1Index] = (ulong)offset | Qcow2Entries.Copied;
        _dirtyL1Sectors.Add((int)(l1Index / 64));
        return offset;
    }

    private void ReleaseIfReplaced(ulong old, ulong updated)
    {
        switch (Qcow2Entries.Classify(old, _header.Version))
        {
            case L2EntryKind.Normal:
            case L2EntryKind.ZeroAllocated:
                long offset = (long)(old & Qcow2Entries.OffsetMask);
                if ((updated & Qcow2Entries.CompressedFlag) != 0 || (long)(updated & Qcow2Entries.OffsetMask) != offset)
                    _refcounts.QueueFree(offset, ClusterSize);
                break;
            case L2EntryKind.Compressed:
                var (start, length) = Qcow2Entries.CompressedExtent(old, _clusterBits);
                _refcounts.QueueFree(start, length);
                break;
        }
    }

    private long L2Offset(long l1Index)
    {
        if (l1Index >= _l1.Length) return 0;
        long offset = (long)(_l1[l1Index] & Qcow2Entries.OffsetMask);
        if ((offset & (ClusterSize - 1)) != 0)
            throw VDiskException.Corrupt(_storage.Name, $"L1 entry {l1Index} points to an L2 table at unaligned offset 0x{offset:x}.");
        return offset;
    }

    private long DataOffset(ulong entry, long guestCluster)
    {
        long offset = (long)(entry & Qcow2Entries.OffsetMask);
        if ((offset & (ClusterSize - 1)) != 0)
            throw VDiskException.Corrupt(_storage.Name, $"L2 entry for guest offset 0x{guestCluster << _clusterBits:x} points to unaligned host offset 0x{offset:x}.");
        return offset;
    }

    private ulong[] ReadL1(long offset, int size)
    {
        var raw = new byte[(long)size * 8];
        _storage.ReadAt(offset, raw);
        var l1 = new ulong[size];
        for (int i = 0; i < l1.Length; i++) l1[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
        return l1;
    }

    private static ulong Read(byte[] table, int index) => BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(index * 8));
    private static void Write(byte[] table, int index, ulong value) => BinaryPrimitives.WriteUInt64BigEndian(table.AsSpan(index * 8), value);
}
