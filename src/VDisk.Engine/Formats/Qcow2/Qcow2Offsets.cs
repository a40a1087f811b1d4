// Typed offsets for the qcow2 metadata core (DESIGN.md "The qcow2 metadata core": typed offsets).
// A guest offset, a host offset and a host cluster index are different things; qcow2.rst "Cluster
// mapping" converts between them with cluster_bits, and mixing them up is how metadata gets corrupted.
namespace VDisk.Engine.Formats.Qcow2;

/// <summary>A byte offset in the guest's view of the disk.</summary>
internal readonly record struct GuestOffset(long Value)
{
    public static GuestOffset operator +(GuestOffset o, long bytes) => new(o.Value + bytes);
    public override string ToString() => $"guest 0x{Value:x}";
}

/// <summary>A byte offset in the image file.</summary>
internal readonly record struct HostOffset(long Value)
{
    public static readonly HostOffset None = new(0);
    public bool IsNone => Value == 0;
    public static HostOffset operator +(HostOffset o, long bytes) => new(o.Value + bytes);
    public override string ToString() => $"host 0x{Value:x}";
}

/// <summary>The index of a host cluster: its host offset divided by the cluster size.</summary>
internal readonly record struct ClusterIndex(long Value)
{
    public static ClusterIndex operator +(ClusterIndex c, long clusters) => new(c.Value + clusters);
    public static bool operator <(ClusterIndex a, ClusterIndex b) => a.Value < b.Value;
    public static bool operator >(ClusterIndex a, ClusterIndex b) => a.Value > b.Value;
    public static bool operator <=(ClusterIndex a, ClusterIndex b) => a.Value <= b.Value;
    public static bool operator >=(ClusterIndex a, ClusterIndex b) => a.Value >= b.Value;
    public override string ToString() => $"cluster {Value}";
}

/// <summary>The conversions cluster_bits defines (qcow2.rst "Cluster mapping").</summary>
internal readonly struct Qcow2Geometry
{
    public Qcow2Geometry(int clusterBits) => ClusterBits = clusterBits;

    public int ClusterBits { get; }
    public long ClusterSize => 1L << ClusterBits;
    /// <summary>log2 of the entries in one L2 table (8-byte entries, one cluster).</summary>
    public int L2Bits => ClusterBits - 3;
    public int L2Entries => 1 << L2Bits;
    /// <summary>Guest bytes one L2 table maps.</summary>
    public long BytesPerL2 => 1L << (ClusterBits + L2Bits);

    public ClusterIndex ClusterOf(HostOffset offset) => new(offset.Value >> ClusterBits);
    public HostOffset OffsetOf(ClusterIndex cluster) => new(cluster.Value << ClusterBits);
    public bool IsAligned(HostOffset offset) => (offset.Value & (ClusterSize - 1)) == 0;
    /// <summary>Clusters touched by the host byte range [offset, offset + length).</summary>
    public (ClusterIndex First, long Count) ClustersOf(HostOffset offset, long length)
    {
        long first = offset.Value >> ClusterBits, last = (offset.Value + Math.Max(length, 1) - 1) >> ClusterBits;
        return (new ClusterIndex(first), last - first + 1);
    }

    /// <summary>The guest cluster number (not a host cluster: it indexes L1/L2, never refcounts).</summary>
    public long GuestCluster(GuestOffset offset) => offset.Value >> ClusterBits;
    public long L1Index(long guestCluster) => guestCluster >> L2Bits;
    public int L2Index(long guestCluster) => (int)(guestCluster & (L2Entries - 1));
    public long OffsetInCluster(GuestOffset offset) => offset.Value & (ClusterSize - 1);
}
