// A bounded LRU cache of cluster-sized metadata tables (qcow2 L2 tables and refcount blocks), as in
// QEMU's qcow2-cache.c: memory stays bounded whatever the image size; dirty tables are written back
// only when the owner says the write order allows it.
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>LRU cache of tables keyed by host offset. Not thread-safe: the driver holds its lock.</summary>
internal sealed class TableCache
{
    private readonly IStorage _storage;
    private readonly int _tableSize;
    private readonly int _capacity;
    private readonly Dictionary<long, LinkedListNode<Entry>> _entries = new();
    private readonly LinkedList<Entry> _lru = new(); // most recently used first
    private readonly Action _makeDirtyWritable;

    private sealed class Entry
    {
        public required long Offset;
        public required byte[] Data;
        public bool Dirty;
    }

    /// <param name="storage">File the tables live in.</param>
    /// <param name="tableSize">Bytes per table (the cluster size).</param>
    /// <param name="capacity">Most tables held at once (at least 4).</param>
    /// <param name="makeDirtyWritable">
    /// Called before a dirty table is evicted: it must bring the image to a state where this cache's dirty
    /// tables may be written (for L2 tables: refcounts first), then call <see cref="WriteBack"/>.
    /// </param>
    public TableCache(IStorage storage, int tableSize, int capacity, Action makeDirtyWritable)
    {
        _storage = storage;
        _tableSize = tableSize;
        _capacity = Math.Max(4, capacity);
        _makeDirtyWritable = makeDirtyWritable;
    }

    /// <summary>True when some table has changes not yet written.</summary>
    public bool HasDirty { get; private set; }

    /// <summary>The table at <paramref name="offset"/>, read from the file on a miss.</summary>
    public byte[] Get(long offset)
    {
        if (_entries.TryGetValue(offset, out var node))
        {
            Touch(node);
            return node.Value.Data;
        }
        var data = MakeRoom() ?? new byte[_tableSize];
        _storage.ReadAt(offset, data);
        Insert(new Entry { Offset = offset, Data = data });
        return data;
    }

    /// <summary>A new all-zero table at <paramref name="offset"/>, marked dirty (it does not exist on disk yet).</summary>
    public byte[] Create(long offset, ReadOnlySpan<byte> initial = default)
    {
        Forget(offset);
        var data = MakeRoom() ?? new byte[_tableSize];
        Array.Clear(data);
        initial.CopyTo(data);
        Insert(new Entry { Offset = offset, Data = data, Dirty = true });
        HasDirty = true;
        return data;
    }

    /// <summary>
    /// Records that the table at <paramref name="offset"/> was changed. Callers change a table right after Get or
    /// Create, with no other access to this cache in between, so it is still cached (buffers are reused on eviction).
    /// </summary>
    public void MarkDirty(long offset)
    {
        if (!_entries.TryGetValue(offset, out var node))
            throw new InvalidOperationException($"table at 0x{offset:x} was evicted while being changed");
        node.Value.Dirty = true;
        HasDirty = true;
    }

    /// <summary>Drops a table from the cache without writing it (its cluster was freed).</summary>
    public void Forget(long offset)
    {
        if (_entries.Remove(offset, out var node)) _lru.Remove(node);
    }

    /// <summary>Writes every dirty table, in file order.</summary>
    public void WriteBack()
    {
        if (!HasDirty) return;
        foreach (var entry in _lru.Where(e => e.Dirty).OrderBy(e => e.Offset))
        {
            _storage.WriteAt(entry.Offset, entry.Data);
            entry.Dirty = false;
        }
        HasDirty = false;
    }

    private void Touch(LinkedListNode<Entry> node)
    {
        if (node != _lru.First)
        {
            _lru.Remove(node);
            _lru.AddFirst(node);
        }
    }

    private void Insert(Entry entry)
    {
        MakeRoom();
        _entries[entry.Offset] = _lru.AddFirst(entry);
    }

    // Evicts least recently used tables until one slot is free; returns the last victim's buffer for reuse,
    // so a cache under pressure makes no garbage.
    private byte[]? MakeRoom()
    {
        byte[]? recycled = null;
        while (_entries.Count >= _capacity)
        {
            var victim = _lru.Last!;
            if (victim.Value.Dirty)
            {
                _makeDirtyWritable();
                if (victim.Value.Dirty) _storage.WriteAt(victim.Value.Offset, victim.Value.Data);
            }
            _lru.RemoveLast();
            _entries.Remove(victim.Value.Offset);
            recycled = victim.Value.Data;
        }
        return recycled;
    }
}
