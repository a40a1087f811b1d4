// qcow2 reference counts (qcow2.rst "Host cluster management"): the refcount table and blocks,
// 1- to 64-bit entries, cluster allocation, refcount-table growth and deferred frees.
// Write order: increments may reach disk early; decrements wait (QueueFree) until the tables that
// stopped pointing at the clusters are on disk, so a crash leaks at worst.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>Reference counts of host clusters. Not thread-safe: the driver holds its lock.</summary>
internal sealed class Qcow2Refcounts
{
    private readonly IStorage _storage;
    private readonly Qcow2Header _header;
    private readonly TableCache _blocks;
    private readonly List<(long Offset, long Length)> _pendingFrees = new();
    private ulong[] _table;
    private bool _tableDirty;
    private long _freeHint;

    public Qcow2Refcounts(IStorage storage, Qcow2Header header, int blockCacheCapacity)
    {
        _storage = storage;
        _header = header;
        ClusterBits = header.ClusterBits;
        Bits = header.RefcountBits;
        EntriesPerBlock = (1L << ClusterBits) * 8 / Bits;
        MaxRefcount = Bits == 64 ? long.MaxValue : (1L << Bits) - 1;
        _blocks = new TableCache(storage, 1 << ClusterBits, blockCacheCapacity, () => _blocks!.WriteBack());
        _table = ReadTable();
    }

    public int ClusterBits { get; }
    public int Bits { get; }
    public long EntriesPerBlock { get; }
    public long MaxRefcount { get; }
    private long ClusterSize => 1L << ClusterBits;

    /// <summary>True when refcount changes are waiting to be written.</summary>
    public bool HasDirty => _tableDirty || _blocks.HasDirty;

    /// <summary>True when freed clusters wait for their tables to reach disk.</summary>
    public bool HasPendingFrees => _pendingFrees.Count > 0;

    /// <summary>The refcount of the cluster at index <paramref name="cluster"/>.</summary>
    public long Get(long cluster)
    {
        long blockIndex = cluster / EntriesPerBlock;
        if (blockIndex >= _table.Length) return 0;
        long blockOffset = BlockOffset(blockIndex);
        if (blockOffset == 0) return 0;
        return ReadEntry(_blocks.Get(blockOffset), cluster % EntriesPerBlock);
    }

    /// <summary>Adds <paramref name="delta"/> to the refcounts of every cluster touched by the host byte range.</summary>
    public void Update(long offset, long length, long delta)
    {
        long first = offset >> ClusterBits, last = (offset + length - 1) >> ClusterBits;
        for (long c = first; c <= last; c++)
        {
            long value = Get(c) + delta;
            if (value < 0 || value > MaxRefcount)
                throw VDiskException.Corrupt(_storage.Name, $"refcount of cluster {c} would become {value} (limit {MaxRefcount}).");
            Set(c, value);
            if (value == 0 && c < _freeHint) _freeHint = c;
        }
    }

    /// <summary>
    /// Reserves a run of free clusters, at least 1 and at most <paramref name="maxClusters"/> long, and sets
    /// their refcount to 1. Returns the host offset and the number of clusters.
    /// </summary>
    public (long Offset, long Clusters) Allocate(long maxClusters)
    {
        while (true)
        {
            long start = _freeHint;
            while (Get(start) != 0) start++;
            long count = 1;
            while (count < maxClusters && Get(start + count) == 0) count++;
            if ((start + count) << ClusterBits > Qcow2Header.MaxHostOffset)
                throw new VDiskException(VDiskErrorKind.IoError, _storage.Name, $"{_storage.Name}: the image has reached the largest host offset qcow2 allows.");
            if (EnsureBlocksFor(start, count)) continue; // new metadata took clusters: look again
            for (long c = start; c < start + count; c++) Set(c, 1);
            _freeHint = start + count;
            return (start << ClusterBits, count);
        }
    }

    /// <summary>Frees the clusters of a host range once <see cref="ApplyPendingFrees"/> runs (after the tables that used them are on disk).</summary>
    public void QueueFree(long offset, long length) => _pendingFrees.Add((offset, length));

    /// <summary>Applies queued frees (the caller has written and flushed the tables that referenced them).</summary>
    public void ApplyPendingFrees()
    {
        foreach (var (offset, length) in _pendingFrees) Update(offset, length, -1);
        _pendingFrees.Clear();
    }

    /// <summary>Writes dirty refcount blocks, then the refcount table.</summary>
    public void WriteBack()
    {
        _blocks.WriteBack();
        if (!_tableDirty) return;
        var bytes = new byte[(long)_header.RefcountTableClusters << ClusterBits];
        for (int i = 0; i < _table.Length; i++) BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(i * 8), _table[i]);
        _storage.WriteAt(_header.RefcountTableOffset, bytes);
        _tableDirty = false;
    }

    /// <summary>Sets a refcount, for callers that build metadata themselves (creation, repair).</summary>
    public void Set(long cluster, long value)
    {
        long blockIndex = cluster / EntriesPerBlock;
        long blockOffset = BlockOffset(blockIndex);
        if (blockOffset == 0) throw new InvalidOperationException($"no refcount block covers cluster {cluster}");
        var block = _blocks.Get(blockOffset);
        WriteEntry(block, cluster % EntriesPerBlock, value);
        _blocks.MarkDirty(blockOffset);
    }

    /// <summary>Host offsets of every refcount block (for checks).</summary>
    public IEnumerable<long> BlockOffsets()
    {
        for (long i = 0; i < _table.Length; i++)
            if (BlockOffset(i) is var o and not 0) yield return o;
    }

    // Makes sure refcount blocks cover [start, start+count). Returns true when it had to allocate (the caller retries).
    private bool EnsureBlocksFor(long start, long count)
    {
        long lastBlock = (start + count - 1) / EntriesPerBlock;
        if (lastBlock >= _table.Length)
        {
            GrowTable(lastBlock + 1);
            return true;
        }
        for (long b = start / EntriesPerBlock; b <= lastBlock; b++)
        {
            if (BlockOffset(b) != 0) continue;
            // A block with no refcounts: every cluster it covers is free, so it can describe itself from its first cluster.
            long blockCluster = b * EntriesPerBlock;
            var block = _blocks.Create(blockCluster << ClusterBits);
            WriteEntry(block, 0, 1);
            _table[b] = (ulong)(blockCluster << ClusterBits);
            _tableDirty = true;
            return true;
        }
        return false;
    }

    // Moves the refcount table to the end of the image with room for at least `entries` blocks; the new
    // table and the new blocks that cover it are written before the header switches to it.
    private void GrowTable(long entries)
    {
        long perCluster = ClusterSize / 8;
        long newEntries = Math.Max(entries, _table.Length * 2L);
        long tableClusters = (newEntries + perCluster - 1) / perCluster;
        newEntries = tableClusters * perCluster;

        // The table and its new blocks go in the first free run past the end of the file.
        long end = Math.Max(_freeHint, (_storage.Length + ClusterSize - 1) >> ClusterBits);
        long newBlocks = 0;
        while (true)
        {
            long regionLength = tableClusters + newBlocks;
            long used = FirstUsed(end, regionLength);
            if (used >= 0)
            {
                end = used + 1;
                continue;
            }
            long lastGroup = (end + regionLength - 1) / EntriesPerBlock;
            if (lastGroup >= newEntries)
            {
                tableClusters = (lastGroup + 1 + perCluster - 1) / perCluster;
                newEntries = tableClusters * perCluster;
                continue;
            }
            long needed = 0; // blocks to cover the table and the new blocks themselves
            for (long b = end / EntriesPerBlock; b <= lastGroup; b++)
                if (b >= _table.Length || BlockOffset(b) == 0) needed++;
            if (needed <= newBlocks) break;
            newBlocks = needed;
        }

        if (tableClusters * ClusterSize > Qcow2Header.MaxRefcountTableBytes)
            throw new VDiskException(VDiskErrorKind.IoError, _storage.Name, $"{_storage.Name}: the refcount table would exceed {Qcow2Header.MaxRefcountTableBytes >> 20} MiB.");
        var table = new ulong[newEntries];
        _table.CopyTo(table, 0);
        long nextBlockCluster = end + tableClusters;
        for (long b = end / EntriesPerBlock; b <= (end + tableClusters + newBlocks - 1) / EntriesPerBlock; b++)
        {
            if (b < _table.Length && BlockOffset(b) != 0) continue;
            table[b] = (ulong)(nextBlockCluster << ClusterBits);
            _blocks.Create(nextBlockCluster << ClusterBits);
            nextBlockCluster++;
        }
        long oldOffset = _header.RefcountTableOffset, oldClusters = _header.RefcountTableClusters;
        _table = table;
        for (long c = end; c < nextBlockCluster; c++) Set(c, 1);

        // Blocks, then the table, then the header fields that point at it.
        _blocks.WriteBack();
        var bytes = new byte[tableClusters * ClusterSize];
        for (int i = 0; i < table.Length; i++) BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(i * 8), table[i]);
        _storage.WriteAt(end << ClusterBits, bytes);
        _storage.Flush();
        Span<byte> fields = stackalloc byte[12];
        BinaryPrimitives.WriteUInt64BigEndian(fields, (ulong)(end << ClusterBits));
        BinaryPrimitives.WriteUInt32BigEndian(fields[8..], (uint)tableClusters);
        _storage.WriteAt(Qcow2Header.RefcountTableOffsetOffset, fields);
        _storage.Flush();
        _header.RefcountTableOffset = end << ClusterBits;
        _header.RefcountTableClusters = (int)tableClusters;
        _tableDirty = false;
        Update(oldOffset, oldClusters * ClusterSize, -1);
        _freeHint = Math.Min(_freeHint, oldOffset >> ClusterBits);
    }

    // The first cluster in [start, start+count) with a non-zero refcount, or -1.
    private long FirstUsed(long start, long count)
    {
        for (long c = start; c < start + count; c++)
            if (Get(c) != 0) return c;
        return -1;
    }

    private long BlockOffset(long blockIndex)
    {
        ulong entry = _table[blockIndex];
        long offset = (long)(entry & Qcow2Entries.OffsetMask);
        if (offset != 0 && (offset & (ClusterSize - 1)) != 0)
            throw VDiskException.Corrupt(_storage.Name, $"refcount table entry {blockIndex} points to unaligned offset 0x{offset:x}.");
        return offset;
    }

    private ulong[] ReadTable()
    {
        long bytes = (long)_header.RefcountTableClusters << ClusterBits;
        var raw = new byte[bytes];
        _storage.ReadAt(_header.RefcountTableOffset, raw);
        var table = new ulong[bytes / 8];
        for (int i = 0; i < table.Length; i++) table[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
        return table;
    }

    private long ReadEntry(byte[] block, long index) => Bits switch
    {
        64 => (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(block.AsSpan((int)index * 8)), (ulong)long.MaxValue),
        32 => BinaryPrimitives.ReadUInt32BigEndian(block.AsSpan((int)index * 4)),
        16 => BinaryPrimitives.ReadUInt16BigEndian(block.AsSpan((int)index * 2)),
        8 => block[index],
        _ => (block[index * Bits / 8] >> (int)(index * Bits % 8)) & (int)MaxRefcount,
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
