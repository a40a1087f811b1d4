// A bounded LRU cache of cluster-sized metadata tables (qcow2 L2 tables, refcount blocks), as QEMU's
// qcow2-cache.c: memory stays bounded whatever the image size. The cache is a metadata store: a dirty
// table is written only once the stores it depends on are durable (on eviction too), and a table whose
// cluster is freed is forgotten so a stale copy can never be written over the cluster's next owner.
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>LRU cache of tables keyed by host offset. Not thread-safe: the image holds its lock.</summary>
internal sealed class Qcow2MetadataCache : Qcow2MetadataStore
{
    private readonly IStorage _storage;
    private readonly Qcow2MetadataKind _kind;
    private readonly int _tableSize;
    private readonly int _capacity;
    private readonly Dictionary<long, LinkedListNode<Entry>> _entries = new();
    private readonly LinkedList<Entry> _lru = new(); // most recently used first
    private int _dirtyCount;

    private sealed class Entry
    {
        public required long Offset;
        public required byte[] Data;
        public bool Dirty;
    }

    /// <param name="order">The image's write order.</param>
    /// <param name="name">What the tables are, for barriers ("L2 tables", "refcount blocks").</param>
    /// <param name="kind">Their kind for the overlap check.</param>
    /// <param name="storage">File the tables live in (read directly; written through the write order).</param>
    /// <param name="tableSize">Bytes per table (the cluster size).</param>
    /// <param name="capacity">Most tables held at once (at least 4).</param>
    public Qcow2MetadataCache(Qcow2WriteOrder order, string name, Qcow2MetadataKind kind, IStorage storage, int tableSize, int capacity)
        : base(order, name)
    {
        _storage = storage;
        _kind = kind;
        _tableSize = tableSize;
        _capacity = Math.Max(4, capacity);
    }

    /// <inheritdoc/>
    public override bool HasDirty => _dirtyCount > 0;

    /// <summary>The table at <paramref name="offset"/>, read from the file on a miss.</summary>
    public byte[] Get(HostOffset offset)
    {
        if (_entries.TryGetValue(offset.Value, out var node))
        {
            Touch(node);
            return node.Value.Data;
        }
        var data = MakeRoom() ?? new byte[_tableSize];
        _storage.ReadAt(offset.Value, data);
        Insert(new Entry { Offset = offset.Value, Data = data });
        return data;
    }

    /// <summary>A new table at <paramref name="offset"/> (zeroes, or a copy of <paramref name="initial"/>), dirty: it is not on disk yet.</summary>
    public byte[] Create(HostOffset offset, ReadOnlySpan<byte> initial = default)
    {
        Forget(offset);
        var data = MakeRoom() ?? new byte[_tableSize];
        Array.Clear(data);
        initial.CopyTo(data);
        Insert(new Entry { Offset = offset.Value, Data = data, Dirty = true });
        _dirtyCount++;
        return data;
    }

    /// <summary>
    /// Records that the table at <paramref name="offset"/> was changed. Callers change a table right after Get or
    /// Create, with no other access to this cache in between, so it is still cached (buffers are reused on eviction).
    /// </summary>
    public void MarkDirty(HostOffset offset)
    {
        if (!_entries.TryGetValue(offset.Value, out var node))
            throw new InvalidOperationException($"table at 0x{offset.Value:x} was evicted while being changed");
        if (node.Value.Dirty) return;
        node.Value.Dirty = true;
        _dirtyCount++;
    }

    /// <summary>Drops a table without writing it: its cluster was freed (QEMU's qcow2_cache_discard).</summary>
    public void Forget(HostOffset offset)
    {
        if (!_entries.Remove(offset.Value, out var node)) return;
        _lru.Remove(node);
        if (node.Value.Dirty) _dirtyCount--;
    }

    /// <inheritdoc/>
    protected internal override void WriteDirty()
    {
        foreach (var entry in _lru.Where(e => e.Dirty).OrderBy(e => e.Offset).ToList())
            WriteEntry(entry);
    }

    private void WriteEntry(Entry entry)
    {
        Order.WriteMetadata(_kind, new HostOffset(entry.Offset), entry.Data);
        entry.Dirty = false;
        _dirtyCount--;
    }

    private void Touch(LinkedListNode<Entry> node)
    {
        if (node == _lru.First) return;
        _lru.Remove(node);
        _lru.AddFirst(node);
    }

    private void Insert(Entry entry) => _entries[entry.Offset] = _lru.AddFirst(entry);

    // Evicts least recently used tables until one slot is free; returns the last victim's buffer for reuse,
    // so a cache under pressure makes no garbage. A dirty victim is written once its dependencies are durable.
    private byte[]? MakeRoom()
    {
        byte[]? recycled = null;
        while (_entries.Count >= _capacity)
        {
            var victim = _lru.Last!.Value;
            if (victim.Dirty)
            {
                Order.SatisfyDependencies(this);
                if (victim.Dirty) WriteEntry(victim);
            }
            _lru.RemoveLast();
            _entries.Remove(victim.Offset);
            recycled = victim.Data;
        }
        return recycled;
    }
}
