// What qemu-img map needs from a qcow2 image beyond the mapping answers (QEMU block/qcow2.c qcow2_co_block_status and
// qcow2_detect_metadata_preallocation): the host offset of allocated zero clusters, and whether the image looks
// metadata-preallocated, in which case QEMU asks the host file which data clusters are holes (and so read as zeroes).
using System.Buffers.Binary;

namespace VDisk.Engine.Formats.Qcow2;

public sealed partial class Qcow2Driver
{
    private bool? _metadataPreallocated;

    /// <summary>
    /// For a guest range that reads as zeroes: the host offset of its first cluster when that cluster is an allocated zero
    /// cluster (else null), and how many bytes from <paramref name="guestOffset"/> (at most <paramref name="maxLength"/>)
    /// share that answer, consecutive allocated clusters counting as one when their host offsets follow each other.
    /// </summary>
    internal (long? Host, long Length) ZeroClusters(long guestOffset, long maxLength)
    {
        long cluster = guestOffset >> Header.ClusterBits;
        long? first = AllocatedZero(cluster);
        long length = ClusterSize - (guestOffset & (ClusterSize - 1));
        for (long next = cluster + 1; length < maxLength; next++, length += ClusterSize)
        {
            long? host = AllocatedZero(next);
            if (first is null ? host != null : host != first + ((next - cluster) << Header.ClusterBits)) break;
        }
        return (first is null ? null : first + (guestOffset & (ClusterSize - 1)), Math.Min(length, maxLength));
    }

    private long? AllocatedZero(long guestCluster)
    {
        ulong entry = _image.Entry(_map, guestCluster);
        return Qcow2Entries.Classify(entry, Header.Version) == L2EntryKind.ZeroAllocated ? (long)(entry & Qcow2Entries.OffsetMask) : null;
    }

    /// <summary>
    /// QEMU's test for metadata preallocation: at least max(n * 10 / 9, n + 2) clusters have a refcount, where n is the
    /// number of clusters the host really stores for the file. Then data clusters in holes of the file read as zeroes.
    /// </summary>
    internal bool LooksMetadataPreallocated()
    {
        if (_metadataPreallocated is { } known) return known;
        long real = Storage.AllocatedBytes / ClusterSize;
        long threshold = Math.Max(real * 10 / 9, real + 2);
        long end = (Storage.Length + ClusterSize - 1) / ClusterSize, counted = 0;
        long perBlock = ClusterSize * 8L / Header.RefcountBits;
        var table = new byte[(long)Header.RefcountTableClusters * ClusterSize];
        Storage.ReadAt(Header.RefcountTableOffset, table);
        var block = new byte[ClusterSize];
        for (long b = 0; b * perBlock < end && counted < threshold && b * 8 < table.Length; b++)
        {
            long offset = (long)(BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan((int)(b * 8))) & Qcow2Entries.OffsetMask);
            if (offset == 0) continue;
            Storage.ReadAt(offset, block);
            for (long i = 0; i < perBlock && b * perBlock + i < end && counted < threshold; i++)
                if (Qcow2Refcounts.ReadEntry(block, i, Header.RefcountBits) != 0) counted++;
        }
        _metadataPreallocated = counted >= threshold;
        return counted >= threshold;
    }
}
