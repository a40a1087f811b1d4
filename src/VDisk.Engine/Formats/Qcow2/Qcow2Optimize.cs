// Quick optimize of a qcow2 image (qcow2.rst "Cluster mapping": zero clusters and unallocated entries; "Host cluster
// management"): active data clusters that hold only zeroes become zero clusters (unallocated when no backing file could
// show through) and give their host cluster back; then free clusters inside the file are punched out and free space at
// its end is cut off. The guest view never changes.
// Order: each entry change goes through the cluster map, so the L2 table stops pointing at a cluster before its count
// drops (write order); holes are punched and the file truncated only after a flush has made every such table and count
// durable, and only over clusters whose refcount is 0, which after a check that found no corruption nothing references.
namespace VDisk.Engine.Formats.Qcow2;

internal sealed partial class Qcow2Image
{
    /// <summary>
    /// Turns every active data cluster (and preallocated zero cluster) that reads as zeroes into a zero cluster, or an
    /// unallocated one when <paramref name="hasBacking"/> is false, freeing its host cluster. Version 2 images over a
    /// backing file cannot say "zero" and are left alone. Returns the number of guest clusters changed.
    /// </summary>
    public long ZeroClustersReadingAsZeroes(bool hasBacking, CancellationToken cancel)
    {
        lock (_lock)
        {
            CheckWritable();
            int version = Header.Version;
            if (version < 3 && hasBacking) return 0;
            ulong replacement = hasBacking ? Qcow2Entries.ZeroFlag : 0;
            var buffer = new byte[Geometry.ClusterSize];
            long changed = 0;
            foreach (var (l1Index, l2) in Active.L1.Targets(Geometry, Storage.Name).ToList())
            {
                cancel.ThrowIfCancellationRequested();
                var zeroes = new List<long>();
                var table = _l2.Get(l2);
                var entries = new ulong[Geometry.L2Entries];
                for (int i = 0; i < entries.Length; i++) entries[i] = Qcow2ClusterMap.Read(table, i);
                for (int i = 0; i < entries.Length; i++)
                {
                    var kind = Qcow2Entries.Classify(entries[i], version);
                    if (kind == L2EntryKind.Normal)
                    {
                        Storage.ReadAt((long)(entries[i] & Qcow2Entries.OffsetMask), buffer);
                        if (buffer.AsSpan().ContainsAnyExcept((byte)0)) continue;
                    }
                    else if (kind != L2EntryKind.ZeroAllocated) continue;
                    zeroes.Add((l1Index << Geometry.L2Bits) + i);
                }
                for (int at = 0; at < zeroes.Count;)
                {
                    int run = 1;
                    while (at + run < zeroes.Count && zeroes[at + run] == zeroes[at] + run) run++;
                    Active.Update(zeroes[at], run, (_, _) => replacement);
                    at += run;
                }
                changed += zeroes.Count;
            }
            return changed;
        }
    }

    /// <summary>
    /// Makes every change durable, then punches out free clusters inside the file and truncates free space at its end.
    /// Returns the new file length.
    /// </summary>
    public long TrimFreeSpace(CancellationToken cancel)
    {
        lock (_lock)
        {
            CheckWritable();
            long end = CutFreeEnd();
            for (long c = 1; c < end;)
            {
                cancel.ThrowIfCancellationRequested();
                if (Refcounts.Get(new ClusterIndex(c)) != 0)
                {
                    c++;
                    continue;
                }
                long run = c;
                while (run < end && Refcounts.Get(new ClusterIndex(run)) == 0) run++;
                Storage.Discard(c << Geometry.ClusterBits, (run - c) << Geometry.ClusterBits);
                c = run;
            }
            Storage.Flush();
            return Storage.Length;
        }
    }

    // Cuts the file after its last used cluster and returns the clusters it keeps. Flushed first, so no table on disk points
    // at a cluster freed before this and every zero count is durable.
    private long CutFreeEnd()
    {
        FlushLocked();
        long end = (Storage.Length + Geometry.ClusterSize - 1) >> Geometry.ClusterBits;
        while (end > 1 && Refcounts.Get(new ClusterIndex(end - 1)) == 0) end--;
        if (end << Geometry.ClusterBits < Storage.Length) Storage.SetLength(end << Geometry.ClusterBits);
        return end;
    }
}
