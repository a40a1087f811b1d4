// Write ordering for qcow2 metadata (DESIGN.md "Caches with dependencies"; QEMU's qcow2_cache_set_dependency).
// Metadata lives in stores (L2 cache, refcount-block cache, L1 table, refcount table, guest data) that write
// back lazily. A store may depend on others: their changes are written and flushed to the medium (a barrier)
// before any of its own changes are written. Callers declare a dependency *before* making the change it
// orders, and never flush by hand, so no caller can get the order wrong:
//   - an L2 table that points at new clusters depends on the refcount blocks that count them, and on the
//     guest data written into them;
//   - an L1 table that points at a new L2 table depends on the L2 cache;
//   - the refcount table depends on a new refcount block it publishes;
//   - refcount blocks whose counts drop depend on the tables that stopped pointing at the clusters.
// Chains are fine (L1 -> L2 tables -> refcount blocks); a dependency that would close a cycle is added only
// after the other store's own dependencies are satisfied (written and flushed), so the graph never has one.
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>Metadata held in memory that must reach the file in dependency order.</summary>
internal abstract class Qcow2MetadataStore
{
    protected Qcow2MetadataStore(Qcow2WriteOrder order, string name)
    {
        Order = order;
        Name = name;
    }

    /// <summary>What the store holds, for barriers and messages ("L2 tables", "refcount blocks", ...).</summary>
    public string Name { get; }

    /// <summary>The stores whose changes must be durable before this store's changes are written.</summary>
    internal HashSet<Qcow2MetadataStore> Dependencies { get; } = new();

    protected Qcow2WriteOrder Order { get; }

    /// <summary>True when changes wait to be written.</summary>
    public abstract bool HasDirty { get; }

    /// <summary>Declares that <paramref name="dependency"/>'s current changes must be durable before any of ours are written.</summary>
    public void DependOn(Qcow2MetadataStore dependency) => Order.AddDependency(this, dependency);

    /// <summary>Writes every pending change (dependencies first).</summary>
    public void WriteBack() => Order.WriteBack(this);

    /// <summary>Writes the changes through <see cref="Qcow2WriteOrder.WriteMetadata"/>; called once dependencies are durable.</summary>
    protected internal abstract void WriteDirty();
}

/// <summary>Guest data written into clusters since the last barrier: a store with nothing of its own to write.</summary>
internal sealed class Qcow2DataWrites : Qcow2MetadataStore
{
    public Qcow2DataWrites(Qcow2WriteOrder order) : base(order, "guest data") { }
    public override bool HasDirty => Order.HasUnflushedWrites;
    protected internal override void WriteDirty() { }
}

/// <summary>The dependency graph of one image's metadata stores, the barriers, and the checked metadata writes.</summary>
internal sealed class Qcow2WriteOrder
{
    private static readonly AsyncLocal<string?> SkippedBarrier = new();
    private readonly IStorage _storage;
    private readonly Qcow2OverlapGuard _guard;
    private volatile bool _unflushed;

    public Qcow2WriteOrder(IStorage storage, Qcow2OverlapGuard guard)
    {
        _storage = storage;
        _guard = guard;
    }

    /// <summary>True when something was written since the last barrier.</summary>
    public bool HasUnflushedWrites => _unflushed;

    /// <summary>
    /// Tests only: the barrier before writes to the store named <paramref name="storeName"/> (or "header") is left out
    /// in the current async flow, so the power-loss tests can prove they notice a missing barrier.
    /// </summary>
    internal static IDisposable SkipBarrierBefore(string storeName)
    {
        SkippedBarrier.Value = storeName;
        return new Reset();
    }

    public void AddDependency(Qcow2MetadataStore store, Qcow2MetadataStore dependency)
    {
        if (ReferenceEquals(store, dependency) || store.Dependencies.Contains(dependency)) return;
        if (Reaches(dependency, store)) SatisfyDependencies(dependency); // would close a cycle: break it first
        store.Dependencies.Add(dependency);
    }

    private static bool Reaches(Qcow2MetadataStore from, Qcow2MetadataStore to)
        => from.Dependencies.Any(d => ReferenceEquals(d, to) || Reaches(d, to));

    public void WriteBack(Qcow2MetadataStore store)
    {
        SatisfyDependencies(store);
        if (store.HasDirty) store.WriteDirty();
    }

    /// <summary>Writes what <paramref name="store"/> depends on and makes it durable, then forgets the dependencies.</summary>
    public void SatisfyDependencies(Qcow2MetadataStore store)
    {
        if (store.Dependencies.Count == 0) return;
        foreach (var dependency in store.Dependencies.ToArray()) WriteBack(dependency);
        Barrier(store.Name);
        store.Dependencies.Clear();
    }

    /// <summary>Makes every completed write durable before <paramref name="before"/> is written.</summary>
    public void Barrier(string before)
    {
        if (!_unflushed || SkippedBarrier.Value == before) return;
        _unflushed = false; // cleared first: a data write completing meanwhile sets it again for the next barrier
        _storage.Flush();
    }

    /// <summary>Writes a metadata structure of <paramref name="kind"/> after checking it overwrites no other metadata.</summary>
    public void WriteMetadata(Qcow2MetadataKind kind, HostOffset offset, ReadOnlySpan<byte> data)
    {
        _guard.CheckWrite(offset, data.Length, kind);
        _storage.WriteAt(offset.Value, data);
        _unflushed = true;
    }

    /// <summary>Records a completed guest-data write (checked by the caller) so the next barrier covers it.</summary>
    public void NoteDataWrite() => _unflushed = true;

    private sealed class Reset : IDisposable
    {
        public void Dispose() => SkippedBarrier.Value = null;
    }
}
