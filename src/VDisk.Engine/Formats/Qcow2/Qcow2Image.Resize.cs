// Resizing a qcow2 image (qcow2.rst "Header" size and l1_size, "Cluster mapping"; QEMU's qcow2_co_truncate,
// qcow2_grow_l1_table and qcow2_shrink_l1_table): the L1 table grows in place when its clusters have room, else
// moves; the new area may be filled (preallocation) or made to read as zeroes; shrinking frees every cluster past
// the new end and the L2 tables no longer needed. The new size is always the last thing written: a crash before
// it leaves the image at its old size, readable, at worst with leaked clusters.
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Qcow2;

internal sealed partial class Qcow2Image
{
    /// <summary>
    /// Gives the active L1 table room for <paramref name="entries"/>. When the clusters it occupies have room, the new
    /// entries are written there as zeroes, then the header's l1_size grows; otherwise the table moves to free space: the
    /// new table and the counts of its clusters are made durable, the header switches to it, and only then is the old
    /// table freed. Pending L1 changes are written in the old place first.
    /// </summary>
    public void GrowL1(int entries)
    {
        lock (_lock)
        {
            CheckWritable();
            var old = Active.L1;
            if (entries <= old.Count) return;
            if (entries * 8L > Qcow2Header.MaxL1Bytes)
                throw VDiskException.Invalid(Storage.Name, $"{Storage.Name}: an L1 table of {entries} entries exceeds qcow2's limit of {Qcow2Header.MaxL1Bytes >> 20} MiB.");
            _order.WriteBack(old);
            long clusters = (entries * 8L + Geometry.ClusterSize - 1) >> Geometry.ClusterBits;
            long room = old.Offset.IsNone ? 0 : ((old.ByteLength + Geometry.ClusterSize - 1) >> Geometry.ClusterBits) << Geometry.ClusterBits;
            bool inPlace = entries * 8L <= room;
            var offset = inPlace ? old.Offset : Refcounts.AllocateContiguous(clusters);
            var table = Qcow2PointerTable.CreateAt(_order, old, offset, entries);
            if (!inPlace) Refcounts.MustPrecede(table);
            table.WriteBack();
            _header.Update(h =>
            {
                h.L1TableOffset = offset.Value;
                h.L1Size = entries;
            });
            Active.ReplaceL1(table);
            _guard.SetRanges(Qcow2MetadataKind.ActiveL1, new[] { (table.Offset, table.ByteLength) });
            if (!inPlace && old.Count > 0) Refcounts.Decrement(old.Offset, old.ByteLength, dereferencedBy: null); // the header no longer points at it, durably
        }
    }

    /// <summary>
    /// Grows the disk to <paramref name="size"/> bytes: the L1 table grows if it must; then <paramref name="fillNewArea"/>
    /// (preallocation) runs, or, with <paramref name="zeroNewClusters"/> (a version 3 image whose backing file would
    /// otherwise show through), every whole cluster past the old end is made to read as zeroes; the new size is
    /// published last, durably.
    /// </summary>
    public void Grow(long size, bool zeroNewClusters, Action? fillNewArea = null)
    {
        lock (_lock)
        {
            CheckWritable();
            long old = Header.Size;
            if (size <= old) return;
            BeforeGuestChange(); // bitmaps are sized for the old disk
            zeroNewClusters &= fillNewArea is null; // preallocated clusters hold zeroes of their own
            if (zeroNewClusters && Header.Version < 3)
                throw VDiskException.Unsupported(Storage.Name, "a version 2 (compat 0.10) image cannot grow over a larger backing file: the backing file would show through past its old end.");
            long entries = Qcow2Header.RequiredL1Size(size, Geometry.ClusterBits);
            if (entries > Active.L1.Count) GrowL1(checked((int)entries));
            fillNewArea?.Invoke();
            if (zeroNewClusters)
            {
                long first = (old + Geometry.ClusterSize - 1) >> Geometry.ClusterBits;
                long end = (size + Geometry.ClusterSize - 1) >> Geometry.ClusterBits;
                if (end > first) Active.Update(first, end - first, (_, _) => Qcow2Entries.ZeroFlag);
            }
            WriteBackAll(); // durable at the header update's first barrier, before the new size exposes the new clusters
            _header.Update(h => h.Size = size);
        }
    }

    /// <summary>
    /// Shrinks the disk to <paramref name="size"/> bytes (qemu-img resize --shrink): every cluster wholly past the new end
    /// loses the active image's reference (snapshots keep theirs), L2 tables past the new L1 reach are freed (l1_size
    /// stays, as in QEMU), the new size is published durably, and free clusters at the end of the file are cut off.
    /// </summary>
    public void Shrink(long size)
    {
        lock (_lock)
        {
            CheckWritable();
            long old = Header.Size;
            if (size >= old) return;
            BeforeGuestChange(); // bitmaps are sized for the old disk
            long first = (size + Geometry.ClusterSize - 1) >> Geometry.ClusterBits;
            long end = (old + Geometry.ClusterSize - 1) >> Geometry.ClusterBits;
            if (end > first) Active.Update(first, end - first, (_, _) => 0);
            long keep = Qcow2Header.RequiredL1Size(size, Geometry.ClusterBits);
            var l1 = Active.L1;
            foreach (var (index, table) in l1.Targets(Geometry, Storage.Name).Where(t => t.Index >= keep).ToList())
            {
                l1.Set(index, 0);
                _guard.SetL2Table(table, false);
                Refcounts.Decrement(table, Geometry.ClusterSize, dereferencedBy: l1);
            }
            WriteBackAll();
            _header.Update(h => h.Size = size); // its barriers make the cleared tables and the dropped counts durable first
            CutFreeEnd(); // QEMU too cuts the file after a shrink
        }
    }
}
