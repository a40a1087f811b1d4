// qcow2 L1 and L2 table entries (qcow2.rst "Cluster mapping"): flag bits, offset masks and the
// compressed cluster descriptor, with validation that rejects unaligned or reserved-bit entries.
namespace VDisk.Engine.Formats.Qcow2;

/// <summary>What a standard (non-extended) L2 entry describes.</summary>
internal enum L2EntryKind
{
    Unallocated,
    Zero,
    ZeroAllocated,
    Normal,
    Compressed,
}

/// <summary>Bit layout of L1 and L2 entries.</summary>
internal static class Qcow2Entries
{
    /// <summary>Bit 63: the cluster (or table) has refcount 1 and may be written in place.</summary>
    public const ulong Copied = 1UL << 63;
    /// <summary>Bit 62 of an L2 entry: the cluster is compressed.</summary>
    public const ulong CompressedFlag = 1UL << 62;
    /// <summary>Bit 0 of a standard L2 entry (version 3): the cluster reads as zeroes.</summary>
    public const ulong ZeroFlag = 1UL;
    /// <summary>Bits 9-55: host offset of an L2 table or a standard cluster.</summary>
    public const ulong OffsetMask = 0x00ff_ffff_ffff_fe00UL;
    /// <summary>Reserved bits of an L1 entry (1-8 and 56-62).</summary>
    public const ulong L1ReservedMask = 0x7f00_0000_0000_01feUL;
    /// <summary>Reserved bits of a standard L2 entry (1-8 and 56-61).</summary>
    public const ulong L2ReservedMask = 0x3f00_0000_0000_01feUL;

    /// <summary>Classifies a standard L2 entry.</summary>
    public static L2EntryKind Classify(ulong entry, int version)
    {
        if ((entry & CompressedFlag) != 0) return L2EntryKind.Compressed;
        ulong offset = entry & OffsetMask;
        bool zero = version >= 3 && (entry & ZeroFlag) != 0;
        if (zero) return offset != 0 ? L2EntryKind.ZeroAllocated : L2EntryKind.Zero;
        return offset != 0 ? L2EntryKind.Normal : L2EntryKind.Unallocated;
    }

    /// <summary>Host offset and length of a compressed cluster's data (the sectors it occupies, as QEMU frees them).</summary>
    public static (long Offset, int Length) CompressedExtent(ulong entry, int clusterBits)
    {
        int offsetBits = 62 - (clusterBits - 8);
        ulong offset = entry & ((1UL << offsetBits) - 1);
        ulong sectors = ((entry & ~Copied & ~CompressedFlag) >> offsetBits) + 1;
        return ((long)offset, (int)(sectors * 512 - (offset & 511)));
    }

    /// <summary>The L2 entry for a compressed cluster of <paramref name="length"/> bytes at <paramref name="offset"/>.</summary>
    public static ulong CompressedEntry(long offset, int length, int clusterBits)
    {
        int offsetBits = 62 - (clusterBits - 8);
        ulong extraSectors = (ulong)((offset + length - 1) / 512 - offset / 512);
        return CompressedFlag | (extraSectors << offsetBits) | (ulong)offset;
    }
}
