// Internal snapshots (qcow2.rst "Snapshots"; QEMU's qcow2-snapshot.c): create, apply (revert to) and delete.
// Each is built so that a power cut at any moment leaves the old state or the new one, never a mix:
//   - create: every cluster of the active tree gains a reference and loses its COPIED flag (counts durable
//     first), the snapshot's L1 copy and the new snapshot table are written, and only then does the header
//     publish the table;
//   - apply: the snapshot's tree gains a reference, a new active L1 (a copy of the snapshot's) is written,
//     the header switches to it in one sector write, and only then does the old active tree lose its references;
//   - delete: the header publishes a table without the snapshot, then its tree loses its references and the
//     active entries whose clusters are no longer shared get their COPIED flag back (after the counts).
// Counts and COPIED flags cannot change in one write, so each operation runs with the dirty bit set (version 3):
// a crash between steps leaves an image marked "refcounts may be inconsistent", which QEMU repairs on open and
// qemu-img check -r all repairs; its guest content and snapshot table are the old or the new state either way.
using System.Text;
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Qcow2;

internal sealed partial class Qcow2Image
{
    /// <summary>Takes an internal snapshot of the current state, named <paramref name="name"/>, at <paramref name="now"/>.</summary>
    public Qcow2Snapshot CreateSnapshot(string name, DateTime now)
    {
        lock (_lock)
        {
            CheckWritable();
            if (string.IsNullOrEmpty(name) || Encoding.UTF8.GetByteCount(name) > ushort.MaxValue)
                throw VDiskException.Invalid(Storage.Name, $"{Storage.Name}: a snapshot name must be 1 to {ushort.MaxValue} bytes long.");
            var snapshots = Qcow2SnapshotTable.Read(Storage, Header).ToList();
            if (snapshots.Count >= Qcow2Header.MaxSnapshots)
                throw VDiskException.Invalid(Storage.Name, $"{Storage.Name} already has {snapshots.Count} internal snapshots, the most qcow2 allows.");
            FlushLocked();
            var active = Active.L1;
            CheckReferencesCanGrow(active);
            bool dirty = MarkDirty();

            ChangeReferences(active, +1, dereferencedBy: null);
            SetCopiedFlags(active, copied: false);
            var offset = Refcounts.AllocateContiguous(ClustersFor(active.ByteLength));
            var copy = Qcow2PointerTable.CreateAt(_order, active, offset, active.Count, "snapshot L1 table", Qcow2MetadataKind.InactiveL1);
            for (long i = 0; i < copy.Count; i++) copy.Set(i, copy[i] & ~Qcow2Entries.Copied);
            Refcounts.MustPrecede(copy);
            copy.WriteBack();

            var created = Qcow2Snapshot.Create(NextSnapshotId(snapshots), name, offset.Value, active.Count, Header.Size, now);
            snapshots.Add(created);
            PublishSnapshotTable(snapshots);
            MarkClean(dirty);
            return created;
        }
    }

    /// <summary>Reverts the active state (data and virtual size) to <paramref name="snapshot"/>; the snapshot stays.</summary>
    public void ApplySnapshot(Qcow2Snapshot snapshot)
    {
        lock (_lock)
        {
            CheckWritable();
            FlushLocked();
            var saved = ReadSnapshotL1(snapshot);
            CheckReferencesCanGrow(saved);
            BeforeGuestChange();
            bool dirty = MarkDirty();
            ChangeReferences(saved, +1, dereferencedBy: null);

            int entries = (int)Math.Max(snapshot.L1Size, Qcow2Header.RequiredL1Size(snapshot.DiskSize, Geometry.ClusterBits));
            var offset = Refcounts.AllocateContiguous(ClustersFor(entries * 8L));
            var table = Qcow2PointerTable.CreateAt(_order, saved, offset, entries, Active.L1.Name, Qcow2MetadataKind.ActiveL1);
            for (long i = 0; i < table.Count; i++) table.Set(i, table[i] & ~Qcow2Entries.Copied); // shared with the snapshot now
            Refcounts.MustPrecede(table);
            WriteBackAll();
            table.WriteBack();

            var old = Active.L1;
            _header.Update(h =>
            {
                h.L1TableOffset = offset.Value;
                h.L1Size = entries;
                h.Size = snapshot.DiskSize;
            });
            Active.ReplaceL1(table);
            _guard.SetRanges(Qcow2MetadataKind.ActiveL1, new[] { (table.Offset, table.ByteLength) });
            foreach (var (_, l2) in old.Targets(Geometry, Storage.Name)) _guard.SetL2Table(l2, false);
            foreach (var (_, l2) in table.Targets(Geometry, Storage.Name)) _guard.SetL2Table(l2, true);
            ChangeReferences(old, -1, dereferencedBy: null); // the header no longer points at the old tree, durably
            if (old.Count > 0) Refcounts.Decrement(old.Offset, old.ByteLength, dereferencedBy: null);
            MarkClean(dirty);
        }
    }

    /// <summary>Deletes <paramref name="snapshot"/> and gives back the clusters only it used.</summary>
    public void DeleteSnapshot(Qcow2Snapshot snapshot)
    {
        lock (_lock)
        {
            CheckWritable();
            FlushLocked();
            var snapshots = Qcow2SnapshotTable.Read(Storage, Header).ToList();
            int index = snapshots.FindIndex(s => s.Id == snapshot.Id && s.L1TableOffset == snapshot.L1TableOffset);
            if (index < 0)
                throw new VDiskException(VDiskErrorKind.SnapshotNotFound, Storage.Name, $"{Storage.Name}: snapshot {snapshot.Id} ('{snapshot.Name}') no longer exists.");
            var saved = ReadSnapshotL1(snapshot);
            snapshots.RemoveAt(index);
            bool dirty = MarkDirty();
            PublishSnapshotTable(snapshots);

            ChangeReferences(saved, -1, dereferencedBy: null); // no table lists the snapshot any more, durably
            if (saved.Count > 0) Refcounts.Decrement(saved.Offset, saved.ByteLength, dereferencedBy: null);
            SetCopiedFlags(Active.L1, copied: true);
            MarkClean(dirty);
        }
    }

    // Sets the dirty bit durably (version 3 images that do not have it already); true when it did. An operation that
    // fails half-way leaves it set, so the image is repaired before anyone trusts its counts again.
    private bool MarkDirty()
    {
        if (Header.Version < 3 || Header.IsDirty) return false;
        _header.Update(h => h.IncompatibleFeatures |= Qcow2Features.Dirty);
        return true;
    }

    // Clears the dirty bit MarkDirty set, once every change made meanwhile is durable.
    private void MarkClean(bool dirty)
    {
        if (!dirty) return;
        WriteBackAll();
        _header.Update(h => h.IncompatibleFeatures &= ~Qcow2Features.Dirty);
    }

    private Qcow2PointerTable ReadSnapshotL1(Qcow2Snapshot snapshot)
        => Qcow2PointerTable.Read(_order, "snapshot L1 table", Qcow2MetadataKind.InactiveL1, Storage, new HostOffset(snapshot.L1TableOffset), snapshot.L1Size);

    // Writes the table to fresh clusters after everything pending, switches the header to it (durably), frees the old one.
    private void PublishSnapshotTable(IReadOnlyList<Qcow2Snapshot> snapshots)
    {
        var bytes = Qcow2SnapshotTable.Serialize(snapshots);
        var offset = HostOffset.None;
        if (bytes.Length > 0)
        {
            offset = Refcounts.AllocateContiguous(ClustersFor(bytes.Length));
            _order.WriteMetadata(Qcow2MetadataKind.SnapshotTable, offset, bytes);
        }
        WriteBackAll();
        var oldOffset = new HostOffset(Header.SnapshotsOffset);
        long oldBytes = 0;
        if (Header.SnapshotCount > 0) Qcow2SnapshotTable.L1Tables(Storage, Header, out oldBytes);
        _header.Update(h =>
        {
            h.SnapshotsOffset = offset.Value;
            h.SnapshotCount = snapshots.Count;
        });
        _guard.SetRanges(Qcow2MetadataKind.SnapshotTable, new[] { (offset, (long)bytes.Length) });
        _guard.SetRanges(Qcow2MetadataKind.InactiveL1, snapshots.Select(s => (new HostOffset(s.L1TableOffset), s.L1Size * 8L)));
        if (oldBytes > 0) Refcounts.Decrement(oldOffset, oldBytes, dereferencedBy: null);
    }

    // One reference more or less for every cluster the tree under `l1` points at: its L2 tables and their data.
    private void ChangeReferences(Qcow2PointerTable l1, int delta, Qcow2MetadataStore? dereferencedBy)
    {
        foreach (var (_, l2) in l1.Targets(Geometry, Storage.Name))
        {
            var entries = L2Entries(l2); // copied: a count reaching zero drops the table from the cache
            foreach (ulong entry in entries)
                if (Active.HostExtent(entry) is { Start.IsNone: false } extent) Change(extent.Start, extent.Length);
            Change(l2, Geometry.ClusterSize);
        }

        void Change(HostOffset offset, long length)
        {
            if (delta > 0) Refcounts.Increment(offset, length);
            else Refcounts.Decrement(offset, length, dereferencedBy);
        }
    }

    // COPIED says "refcount is exactly 1, write in place": cleared on everything a snapshot now shares, set again on
    // what a deleted snapshot no longer shares. Either way the flags reach the disk only after the counts do.
    private void SetCopiedFlags(Qcow2PointerTable l1, bool copied)
    {
        if (!Header.LazyRefcounts)
        {
            Refcounts.MustPrecede(_l2);
            Refcounts.MustPrecede(l1);
        }
        foreach (var (index, l2) in l1.Targets(Geometry, Storage.Name))
        {
            bool tableCopied = copied && Refcounts.Get(Geometry.ClusterOf(l2)) == 1;
            l1.Set(index, tableCopied ? l1[index] | Qcow2Entries.Copied : l1[index] & ~Qcow2Entries.Copied);
            if (copied && !tableCopied) continue; // a table still shared keeps its entries as they are
            var table = _l2.Get(l2); // refcount lookups below use the other cache, so the table stays cached
            for (int i = 0; i < Geometry.L2Entries; i++)
            {
                ulong entry = Qcow2ClusterMap.Read(table, i);
                if (Qcow2Entries.Classify(entry, Header.Version) is not (L2EntryKind.Normal or L2EntryKind.ZeroAllocated)) continue;
                bool wanted = copied && Refcounts.Get(Geometry.ClusterOf(new HostOffset((long)(entry & Qcow2Entries.OffsetMask)))) == 1;
                ulong updated = wanted ? entry | Qcow2Entries.Copied : entry & ~Qcow2Entries.Copied;
                if (updated == entry) continue;
                Qcow2ClusterMap.Write(table, i, updated);
                _l2.MarkDirty(l2);
            }
        }
    }

    private ulong[] L2Entries(HostOffset l2)
    {
        var table = _l2.Get(l2);
        var entries = new ulong[Geometry.L2Entries];
        for (int i = 0; i < entries.Length; i++) entries[i] = Qcow2ClusterMap.Read(table, i);
        return entries;
    }

    // Refuses before anything changes when a count would overflow (1-bit refcounts cannot count a snapshot at all).
    private void CheckReferencesCanGrow(Qcow2PointerTable l1)
    {
        long max = Refcounts.MaxRefcount;
        if (max < 2)
            throw VDiskException.Unsupported(Storage.Name, $"{Storage.Name} has {Refcounts.Bits}-bit refcounts, which cannot count a cluster shared with a snapshot; convert it with wider refcounts first.");
        var extra = new Dictionary<long, long>();
        void Need(HostOffset offset, long length)
        {
            var (first, count) = Geometry.ClustersOf(offset, length);
            for (long c = first.Value; c < first.Value + count; c++)
            {
                long wanted = Refcounts.Get(new ClusterIndex(c)) + (extra[c] = extra.GetValueOrDefault(c) + 1);
                if (wanted > max)
                    throw VDiskException.Unsupported(Storage.Name, $"{Storage.Name}: cluster {c} is already shared {wanted - 1} times, the most {Refcounts.Bits}-bit refcounts can count; convert the image with wider refcounts first.");
            }
        }
        foreach (var (_, l2) in l1.Targets(Geometry, Storage.Name))
        {
            foreach (ulong entry in L2Entries(l2))
                if (Active.HostExtent(entry) is { Start.IsNone: false } extent) Need(extent.Start, extent.Length);
            Need(l2, Geometry.ClusterSize);
        }
    }

    // QEMU's find_new_snapshot_id: one more than the largest numeric id.
    private static string NextSnapshotId(IEnumerable<Qcow2Snapshot> snapshots)
        => (snapshots.Select(s => ulong.TryParse(s.Id, out ulong id) ? id : 0).DefaultIfEmpty(0UL).Max() + 1).ToString();

    private long ClustersFor(long bytes) => Math.Max(1, (bytes + Geometry.ClusterSize - 1) >> Geometry.ClusterBits);
}
