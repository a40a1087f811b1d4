// qcow2 reference counts (qcow2.rst "Host cluster management"): the refcount table and blocks, 1- to 64-bit
// entries, cluster allocation, refcount-table growth, and freeing.
// Order (Qcow2WriteOrder): a new refcount block is durable before the table entry that publishes it; a
// count that drops is written only after the table that stopped pointing at the cluster; a freed cluster
// may be handed out again at once, but only after the tables that used to point at it are durable, so a
// power cut can never leave an old pointer to a cluster that already holds someone else's data.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>Reference counts of host clusters. Not thread-safe: the image holds its lock.</summary>
internal sealed class Qcow2Refcounts
{
    private readonly IStorage _storage;
    private readonly Qcow2WriteOrder _order;
    private readonly Qcow2Geometry _geometry;
    private readonly Qcow2OverlapGuard _guard;
    private readonly Qcow2HeaderUpdater _header;
    private readonly HashSet<long> _freedSinceFlush = new();
    private readonly Action _makeFreesDurable;
    private ClusterIndex _freeHint;

    /// <summary>
    /// Reads the refcount table. <paramref name="makeFreesDurable"/> writes back every table (so freed clusters are no
    /// longer pointed at on disk) and calls <see cref="ForgetFrees"/>.
    /// </summary>
    public Qcow2Refcounts(IStorage storage, Qcow2WriteOrder order, Qcow2Geometry geometry, Qcow2OverlapGuard guard,
        Qcow2HeaderUpdater header, int blockCacheCapacity, Action makeFreesDurable)
    {
        _storage = storage;
        _order = order;
        _geometry = geometry;
        _guard = guard;
        _header = header;
        _makeFreesDurable = makeFreesDurable;
        Bits = header.Header.RefcountBits;
        EntriesPerBlock = geometry.ClusterSize * 8 / Bits;
        MaxRefcount = Bits == 64 ? long.MaxValue : (1L << Bits) - 1;
        Blocks = new Qcow2MetadataCache(order, "refcount blocks", Qcow2MetadataKind.RefcountBlock, storage, (int)geometry.ClusterSize, blockCacheCapacity);
        var h = header.Header;
        Table = Qcow2PointerTable.Read(order, "refcount table", Qcow2MetadataKind.RefcountTable, storage,
            new HostOffset(h.RefcountTableOffset), (int)(((long)h.RefcountTableClusters << geometry.ClusterBits) / 8));
        GuardTable();
        foreach (var (_, block) in Table.Targets(geometry, storage.Name)) guard.SetRefcountBlock(block, true);
    }

    public int Bits { get; }
    public long EntriesPerBlock { get; }
    public long MaxRefcount { get; }

    /// <summary>The refcount blocks (a store other stores depend on).</summary>
    public Qcow2MetadataCache Blocks { get; }

    /// <summary>The refcount table (replaced when it grows).</summary>
    public Qcow2PointerTable Table { get; private set; }

    /// <summary>Raised when a cluster's count drops to zero (cached tables for it must be forgotten).</summary>
    public event Action<ClusterIndex>? ClusterFreed;

    /// <summary>Declares that <paramref name="store"/>'s changes need the current counts (blocks and the table publishing them) on disk first.</summary>
    public void MustPrecede(Qcow2MetadataStore store)
    {
        store.DependOn(Blocks);
        store.DependOn(Table);
    }

    /// <summary>The refcount of <paramref name="cluster"/>.</summary>
    public long Get(ClusterIndex cluster)
    {
        long blockIndex = cluster.Value / EntriesPerBlock;
        if (blockIndex >= Table.Count) return 0;
        var block = Table.TargetOf(blockIndex, _geometry, _storage.Name);
        if (block.IsNone) return 0;
        return ReadEntry(Blocks.Get(block), cluster.Value % EntriesPerBlock);
    }

    /// <summary>
    /// Reserves a run of free clusters, at least 1 and at most <paramref name="maxClusters"/> long, and sets their
    /// refcount to 1.
    /// </summary>
    public (HostOffset Offset, long Clusters) Allocate(long maxClusters)
    {
        while (true)
        {
            var start = _freeHint;
            while (Get(start) != 0) start += 1;
            long count = 1;
            while (count < maxClusters && Get(start + count) == 0) count++;
            if (!TryClaim(start, count)) continue; // new metadata took clusters: look again
            _freeHint = start + count;
            return (_geometry.OffsetOf(start), count);
        }
    }

    /// <summary>Reserves exactly <paramref name="clusters"/> free clusters in a row (for a table that must be contiguous).</summary>
    public HostOffset AllocateContiguous(long clusters)
    {
        while (true)
        {
            var start = _freeHint;
            for (long used; (used = FirstUsed(start, clusters)) >= 0;) start = new ClusterIndex(used + 1);
            if (!TryClaim(start, clusters)) continue;
            if (start == _freeHint) _freeHint = start + clusters;
            return _geometry.OffsetOf(start);
        }
    }

    // Sets the refcounts of a free run to 1; false when refcount blocks had to be added first (the caller searches again).
    private bool TryClaim(ClusterIndex start, long count)
    {
        if (_geometry.OffsetOf(start + count).Value > Qcow2Header.MaxHostOffset)
            throw new VDiskException(VDiskErrorKind.IoError, _storage.Name, $"{_storage.Name}: the image has reached the largest host offset qcow2 allows.");
        if (EnsureBlocksFor(start, count)) return false;
        if (ReusesFreed(start, count)) _makeFreesDurable();
        for (long c = 0; c < count; c++) Set(start + c, 1);
        return true;
    }

    /// <summary>Adds one reference to every cluster the host byte range touches (compressed clusters share hosts).</summary>
    public void Increment(HostOffset offset, long length)
    {
        var (first, count) = _geometry.ClustersOf(offset, length);
        for (long c = 0; c < count; c++) Change(first + c, +1);
    }

    /// <summary>
    /// Drops one reference from every cluster the host byte range touches, once <paramref name="dereferencedBy"/> (the
    /// store that stopped pointing at them; null when that is already durable) is written.
    /// </summary>
    public void Decrement(HostOffset offset, long length, Qcow2MetadataStore? dereferencedBy)
    {
        if (dereferencedBy != null) Blocks.DependOn(dereferencedBy);
        var (first, count) = _geometry.ClustersOf(offset, length);
        for (long c = 0; c < count; c++)
        {
            var cluster = first + c;
            if (Change(cluster, -1) != 0) continue;
            _freedSinceFlush.Add(cluster.Value);
            if (cluster < _freeHint) _freeHint = cluster;
            ClusterFreed?.Invoke(cluster);
        }
    }

    /// <summary>
    /// Sets a cluster's refcount to the number of references a check counted (repair): a leaked cluster that drops to
    /// zero is freed like any other. Nothing points at what a repair frees, so no store has to be written first.
    /// </summary>
    public void Repair(ClusterIndex cluster, long references)
    {
        Set(cluster, references);
        if (references != 0) return;
        if (cluster < _freeHint) _freeHint = cluster;
        ClusterFreed?.Invoke(cluster);
    }

    /// <summary>Called once every table is durable: clusters freed so far may be reused without more ado.</summary>
    public void ForgetFrees() => _freedSinceFlush.Clear();

    /// <summary>Sets a refcount (the cluster must be covered by a refcount block).</summary>
    public void Set(ClusterIndex cluster, long value)
    {
        long blockIndex = cluster.Value / EntriesPerBlock;
        var block = blockIndex < Table.Count ? Table.TargetOf(blockIndex, _geometry, _storage.Name) : HostOffset.None;
        if (block.IsNone) throw new InvalidOperationException($"no refcount block covers {cluster}");
        WriteEntry(Blocks.Get(block), cluster.Value % EntriesPerBlock, value);
        Blocks.MarkDirty(block);
    }

    private long Change(ClusterIndex cluster, long delta)
    {
        long value = Get(cluster) + delta;
        if (value < 0 || value > MaxRefcount)
            throw VDiskException.Corrupt(_storage.Name, $"the refcount of {cluster} would become {value} (limit {MaxRefcount}).");
        Set(cluster, value);
        return value;
    }

    private bool ReusesFreed(ClusterIndex start, long count)
    {
        if (_freedSinceFlush.Count == 0) return false;
        for (long c = 0; c < count; c++)
            if (_freedSinceFlush.Contains(start.Value + c)) return true;
        return false;
    }

    // Makes sure refcount blocks cover [start, start+count). Returns true when it had to allocate (the caller retries).
    private bool EnsureBlocksFor(ClusterIndex start, long count)
    {
        long lastBlock = (start.Value + count - 1) / EntriesPerBlock;
        if (lastBlock >= Table.Count)
        {
            GrowTable(lastBlock + 1);
            return true;
        }
        for (long b = start.Value / EntriesPerBlock; b <= lastBlock; b++)
        {
            if (!Table.TargetOf(b, _geometry, _storage.Name).IsNone) continue;
            // A block with no refcounts: every cluster it covers is free, so it can describe itself from its first cluster.
            var blockOffset = _geometry.OffsetOf(new ClusterIndex(b * EntriesPerBlock));
            _guard.SetRefcountBlock(blockOffset, true);
            WriteEntry(Blocks.Create(blockOffset), 0, 1);
            Table.DependOn(Blocks);
            Table.Set(b, (ulong)blockOffset.Value);
            return true;
        }
        return false;
    }

    // Moves the refcount table to free space past the end of the image with room for at least `entries` blocks.
    // Order: pending counts and table entries are written in the old place; the new blocks and the new table are
    // written and made durable; then the header switches to the new table; only then is the old table freed.
    private void GrowTable(long entries)
    {
        _order.WriteBack(Table);
        long perCluster = _geometry.ClusterSize / 8;
        long tableClusters = (Math.Max(entries, Table.Count * 2L) + perCluster - 1) / perCluster;
        long end = Math.Max(_freeHint.Value, (_storage.Length + _geometry.ClusterSize - 1) >> _geometry.ClusterBits);
        long newBlocks = 0;
        while (true)
        {
            long regionLength = tableClusters + newBlocks;
            long used = FirstUsed(new ClusterIndex(end), regionLength);
            if (used >= 0)
            {
                end = used + 1;
                continue;
            }
            long lastGroup = (end + regionLength - 1) / EntriesPerBlock;
            if (lastGroup >= tableClusters * perCluster)
            {
                tableClusters = (lastGroup + 1 + perCluster - 1) / perCluster;
                continue;
            }
            long needed = 0; // blocks to cover the table and the new blocks themselves
            for (long b = end / EntriesPerBlock; b <= lastGroup; b++)
                if (b >= Table.Count || Table.TargetOf(b, _geometry, _storage.Name).IsNone) needed++;
            if (needed <= newBlocks) break;
            newBlocks = needed;
        }
        if (tableClusters * _geometry.ClusterSize > Qcow2Header.MaxRefcountTableBytes)
            throw new VDiskException(VDiskErrorKind.IoError, _storage.Name, $"{_storage.Name}: the refcount table would exceed {Qcow2Header.MaxRefcountTableBytes >> 20} MiB.");

        var oldTable = Table;
        var table = Qcow2PointerTable.CreateAt(_order, oldTable, _geometry.OffsetOf(new ClusterIndex(end)), (int)(tableClusters * perCluster));
        long nextBlock = end + tableClusters;
        for (long b = end / EntriesPerBlock; b <= (end + tableClusters + newBlocks - 1) / EntriesPerBlock; b++)
        {
            if (b < oldTable.Count && !oldTable.TargetOf(b, _geometry, _storage.Name).IsNone) continue;
            var blockOffset = _geometry.OffsetOf(new ClusterIndex(nextBlock++));
            table.Set(b, (ulong)blockOffset.Value);
            _guard.SetRefcountBlock(blockOffset, true);
            Blocks.Create(blockOffset);
        }
        Table = table;
        for (long c = end; c < nextBlock; c++) Set(new ClusterIndex(c), 1);

        table.DependOn(Blocks);
        table.WriteBack();
        _header.Update(h =>
        {
            h.RefcountTableOffset = table.Offset.Value;
            h.RefcountTableClusters = (int)tableClusters;
        });
        GuardTable();
        Decrement(oldTable.Offset, oldTable.ByteLength, dereferencedBy: null); // the header no longer points at it, durably
    }

    private void GuardTable() => _guard.SetRanges(Qcow2MetadataKind.RefcountTable, new[] { (Table.Offset, Table.ByteLength) });

    // The first cluster in [start, start+count) with a non-zero refcount, or -1.
    private long FirstUsed(ClusterIndex start, long count)
    {
        for (long c = 0; c < count; c++)
            if (Get(start + c) != 0) return start.Value + c;
        return -1;
    }

    private long ReadEntry(byte[] block, long index) => ReadEntry(block, index, Bits);

    /// <summary>Entry <paramref name="index"/> of a refcount block of <paramref name="bits"/>-bit entries (qcow2.rst "Refcount block entries").</summary>
    internal static long ReadEntry(byte[] block, long index, int bits) => bits switch
    {
        64 => (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(block.AsSpan((int)index * 8)), (ulong)long.MaxValue),
        32 => BinaryPrimitives.ReadUInt32BigEndian(block.AsSpan((int)index * 4)),
        16 => BinaryPrimitives.ReadUInt16BigEndian(block.AsSpan((int)index * 2)),
        8 => block[index],
        _ => (block[index * bits / 8] >> (int)(index * bits % 8)) & ((1 << bits) - 1),
    };

    private void WriteEntry(byte[] block, long index, long value)
    {
        switch (Bits)
        {
            case 64: BinaryPrimitives.WriteUInt64BigEndian(block.AsSpan((int)index * 8), (ulong)value); break;
            case 32: BinaryPrimitives.WriteUInt32BigEndian(block.AsSpan((int)index * 4), (uint)value); break;
            case 16: BinaryPrimitives.WriteUInt16BigEndian(block.AsSpan((int)index * 2), (ushort)value); break;
            case 8: block[index] = (byte)value; break;
            default:
                int shift = (int)(index * Bits % 8);
                long at = index * Bits / 8;
                block[at] = (byte)((block[at] & ~((int)MaxRefcount << shift)) | ((int)value << shift));
                break;
        }
    }
}
