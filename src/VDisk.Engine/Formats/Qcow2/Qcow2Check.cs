// Consistency check of a qcow2 image's references against its refcounts (qemu-img check; qcow2.rst "Host
// cluster management"): counts every reference with the reference walker and compares with the stored
// refcounts. Fewer stored than referenced is corruption (the cluster could be handed out twice), more is a
// leak (space lost, data safe); an active entry's COPIED flag must say whether its refcount is exactly 1.
// With the dirty bit set (lazy refcounts, or a snapshot operation cut short), stored refcounts and COPIED flags are
// not expected to be right until repaired.
using System.Buffers.Binary;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>What a check found.</summary>
/// <param name="Corruptions">Each problem that could lose data, in words.</param>
/// <param name="LeakedClusters">Clusters with a refcount but no reference.</param>
/// <param name="RefcountsUnreliable">The dirty bit is set: refcounts were not compared.</param>
internal sealed record Qcow2CheckReport(IReadOnlyList<string> Corruptions, long LeakedClusters, bool RefcountsUnreliable)
{
    public bool IsClean => Corruptions.Count == 0 && LeakedClusters == 0;
}

/// <summary>Checks a closed qcow2 image.</summary>
internal static class Qcow2Check
{
    private const int MaxReported = 50;

    /// <summary>Checks the image in <paramref name="storage"/> (read only).</summary>
    public static Qcow2CheckReport Run(IStorage storage)
    {
        var cluster0 = new byte[2 << 20];
        storage.ReadAt(0, cluster0);
        var header = Qcow2Header.Parse(cluster0, storage.Name);
        var g = new Qcow2Geometry(header.ClusterBits);
        long clusters = (storage.Length + g.ClusterSize - 1) >> g.ClusterBits;
        var referenced = new ushort[clusters];
        var copied = new List<(Qcow2Reference Reference, string What)>();
        var corruptions = new List<string>();
        void Report(string message)
        {
            if (corruptions.Count < MaxReported) corruptions.Add(message);
        }

        Qcow2ReferenceWalker.Walk(storage, header, r =>
        {
            var (first, count) = g.ClustersOf(r.Offset, r.Length);
            if (first.Value + count > clusters)
            {
                Report($"{r.Kind} at 0x{r.Offset.Value:x} ({r.Length} bytes) lies beyond the end of the file");
                return;
            }
            for (long c = first.Value; c < first.Value + count; c++)
                if (referenced[c] < ushort.MaxValue) referenced[c]++;
            if (r.Kind is Qcow2ReferenceKind.ActiveL2 or Qcow2ReferenceKind.Data) copied.Add((r, r.Kind.ToString()));
        }, Report);

        if (header.IsDirty) return new Qcow2CheckReport(corruptions, 0, RefcountsUnreliable: true);

        // One pass over the clusters, reading each refcount block once.
        var isOne = new System.Collections.BitArray((int)Math.Min(clusters, int.MaxValue));
        var table = new byte[(long)header.RefcountTableClusters << g.ClusterBits];
        storage.ReadAt(header.RefcountTableOffset, table);
        long perBlock = g.ClusterSize * 8 / header.RefcountBits;
        var block = new byte[g.ClusterSize];
        long loaded = -1, leaks = 0;
        bool present = false;
        for (long c = 0; c < clusters; c++)
        {
            long b = c / perBlock;
            if (b != loaded)
            {
                loaded = b;
                long offset = b * 8 < table.Length ? (long)(BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan((int)(b * 8))) & Qcow2Entries.OffsetMask) : 0;
                present = offset != 0 && offset % g.ClusterSize == 0;
                if (present) storage.ReadAt(offset, block);
            }
            long stored = present ? Qcow2Refcounts.ReadEntry(block, c % perBlock, header.RefcountBits) : 0;
            if (stored < referenced[c]) Report($"cluster {c} has refcount {stored} but {referenced[c]} reference(s)");
            else if (stored > referenced[c]) leaks++;
            isOne[(int)c] = stored == 1;
        }
        foreach (var (r, what) in copied)
        {
            bool one = isOne[(int)g.ClusterOf(r.Offset).Value];
            if (one != r.Copied)
                Report($"{what} cluster at 0x{r.Offset.Value:x} has {(one ? "refcount 1" : "a refcount other than 1")} but its COPIED flag is {(r.Copied ? "set" : "clear")}");
        }
        return new Qcow2CheckReport(corruptions, leaks, RefcountsUnreliable: false);
    }
}
