// The reference walker (DESIGN.md "A reference walker"; qcow2.rst as a whole): visits every host range the
// image references — the header, the refcount table and blocks, the active L1 and its L2 tables and data,
// the snapshot table with each snapshot's L1, L2 tables and data, compressed extents, the bitmap directory
// with its bitmap tables and data, and the encryption header — once per reference, as qemu-img check counts
// them. Check, repair, snapshot create/delete and optimize are built on it. It reads a closed (or flushed)
// image straight from its file and never allocates by a size an image claims. Like qemu-img check
// (qcow2-refcount.c, check_refcounts_l1/l2), a misaligned L2 table or data cluster is still visited, with the raw
// entry, so the caller can count it and judge the alignment; an unaligned refcount block cannot be followed.
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>What a referenced host range holds.</summary>
internal enum Qcow2ReferenceKind
{
    Header, RefcountTable, RefcountBlock, ActiveL1, ActiveL2, Data, Compressed,
    SnapshotTable, SnapshotL1, SnapshotL2, SnapshotData, SnapshotCompressed,
    BitmapDirectory, BitmapTable, BitmapData, EncryptionHeader,
}

/// <summary>One reference: a host range and what holds it.</summary>
/// <param name="Kind">What the range holds.</param>
/// <param name="Offset">Where it starts.</param>
/// <param name="Length">Its length in bytes (compressed extents are shorter than a cluster).</param>
/// <param name="Copied">For active L2 tables and data: the COPIED flag of the entry pointing at it.</param>
/// <param name="Entry">The raw table entry that points at the range (0 for ranges the header or a directory names).</param>
/// <param name="Index">For L2 tables, the L1 index; for data and compressed clusters, the guest cluster; for refcount
/// blocks, the refcount-table index.</param>
internal readonly record struct Qcow2Reference(Qcow2ReferenceKind Kind, HostOffset Offset, long Length, bool Copied = false,
    ulong Entry = 0, long Index = 0);

/// <summary>Walks every reference of a qcow2 image.</summary>
internal static class Qcow2ReferenceWalker
{
    /// <summary>
    /// Calls <paramref name="visit"/> for every reference of the image in <paramref name="storage"/>, and
    /// <paramref name="problem"/> for every structure that cannot be followed (misaligned or unreadable pointers).
    /// </summary>
    public static void Walk(IStorage storage, Qcow2Header header, Action<Qcow2Reference> visit, Action<string> problem)
    {
        var g = new Qcow2Geometry(header.ClusterBits);
        visit(new(Qcow2ReferenceKind.Header, HostOffset.None, g.ClusterSize));

        long tableBytes = (long)header.RefcountTableClusters << g.ClusterBits;
        visit(new(Qcow2ReferenceKind.RefcountTable, new HostOffset(header.RefcountTableOffset), tableBytes));
        foreach (var (index, entry) in ReadEntries(storage, header.RefcountTableOffset, tableBytes / 8))
        {
            var block = new HostOffset((long)(entry & Qcow2Entries.OffsetMask));
            if (block.IsNone) continue;
            if (!g.IsAligned(block)) problem($"refcount table entry {index} points to unaligned offset 0x{block.Value:x}");
            else visit(new(Qcow2ReferenceKind.RefcountBlock, block, g.ClusterSize, Entry: entry, Index: index));
        }

        WalkL1(storage, header, g, header.L1TableOffset, header.L1Size, active: true, "active L1 table", visit, problem);

        if (header.SnapshotCount > 0)
        {
            IReadOnlyList<(long L1TableOffset, int L1Size)> snapshots;
            long snapshotBytes;
            try { snapshots = Qcow2SnapshotTable.L1Tables(storage, header, out snapshotBytes); }
            catch (VDiskException e)
            {
                problem(e.Message);
                return;
            }
            visit(new(Qcow2ReferenceKind.SnapshotTable, new HostOffset(header.SnapshotsOffset), snapshotBytes));
            for (int i = 0; i < snapshots.Count; i++)
                WalkL1(storage, header, g, snapshots[i].L1TableOffset, snapshots[i].L1Size, active: false, $"L1 table of snapshot entry {i}", visit, problem);
        }
        WalkExtensions(storage, header, g, visit, problem);
    }

    private static void WalkL1(IStorage storage, Qcow2Header header, Qcow2Geometry g, long l1Offset, int l1Size, bool active,
        string what, Action<Qcow2Reference> visit, Action<string> problem)
    {
        if (l1Size == 0) return;
        visit(new(active ? Qcow2ReferenceKind.ActiveL1 : Qcow2ReferenceKind.SnapshotL1, new HostOffset(l1Offset), l1Size * 8L));
        var table = new byte[g.ClusterSize];
        foreach (var (l1Index, l1Entry) in ReadEntries(storage, l1Offset, l1Size))
        {
            var l2 = new HostOffset((long)(l1Entry & Qcow2Entries.OffsetMask));
            visit(new(active ? Qcow2ReferenceKind.ActiveL2 : Qcow2ReferenceKind.SnapshotL2, l2, g.ClusterSize,
                (l1Entry & Qcow2Entries.Copied) != 0, l1Entry, l1Index));
            if (l2.IsNone) continue; // an entry of reserved bits only
            storage.ReadAt(l2.Value, table);
            var raw = MemoryMarshal.Cast<byte, ulong>(table.AsSpan());
            for (int i = 0; i < g.L2Entries; i++)
            {
                int skip = raw[i..].IndexOfAnyExcept(0UL); // runs of empty entries, vectorised
                if (skip < 0) break;
                i += skip;
                ulong entry = BinaryPrimitives.ReadUInt64BigEndian(table.AsSpan(i * 8));
                long guest = (l1Index << g.L2Bits) + i;
                switch (Qcow2Entries.Classify(entry, header.Version))
                {
                    case L2EntryKind.Normal:
                    case L2EntryKind.ZeroAllocated:
                        var data = new HostOffset((long)(entry & Qcow2Entries.OffsetMask));
                        visit(new(active ? Qcow2ReferenceKind.Data : Qcow2ReferenceKind.SnapshotData, data, g.ClusterSize,
                            (entry & Qcow2Entries.Copied) != 0, entry, guest));
                        break;
                    case L2EntryKind.Compressed:
                        var (offset, length) = Qcow2Entries.CompressedExtent(entry, g.ClusterBits);
                        visit(new(active ? Qcow2ReferenceKind.Compressed : Qcow2ReferenceKind.SnapshotCompressed, new HostOffset(offset), length,
                            Entry: entry, Index: guest));
                        break;
                    case L2EntryKind.Unallocated or L2EntryKind.Zero when (entry & Qcow2Entries.L2ReservedMask) != 0:
                        problem($"the L2 entry for guest cluster {guest} ({what}) has reserved bits set: 0x{entry:x16}");
                        break;
                }
            }
        }
    }

    // Bitmaps (when the autoclear bit says they are valid) and the LUKS header hold clusters too.
    private static void WalkExtensions(IStorage storage, Qcow2Header header, Qcow2Geometry g, Action<Qcow2Reference> visit, Action<string> problem)
    {
        foreach (var e in header.Extensions)
        {
            if (e.Type == Qcow2HeaderExtension.FullDiskEncryptionType && e.Data.Length >= 16)
                visit(new(Qcow2ReferenceKind.EncryptionHeader, new HostOffset((long)BinaryPrimitives.ReadUInt64BigEndian(e.Data)),
                    (long)BinaryPrimitives.ReadUInt64BigEndian(e.Data.AsSpan(8))));
            if (e.Type == Qcow2HeaderExtension.BitmapsType && e.Data.Length >= 24 && (header.AutoclearFeatures & Qcow2Features.Bitmaps) != 0)
                WalkBitmaps(storage, g, e.Data, visit, problem);
        }
    }

    // qcow2.rst "Bitmaps extension" and "Bitmap directory": each entry names a bitmap table whose entries point at data clusters.
    private static void WalkBitmaps(IStorage storage, Qcow2Geometry g, byte[] extension, Action<Qcow2Reference> visit, Action<string> problem)
    {
        uint count = BinaryPrimitives.ReadUInt32BigEndian(extension);
        long directorySize = (long)Math.Min(BinaryPrimitives.ReadUInt64BigEndian(extension.AsSpan(8)), 64UL << 20);
        ulong directoryOffset = BinaryPrimitives.ReadUInt64BigEndian(extension.AsSpan(16));
        if (directoryOffset % (ulong)g.ClusterSize != 0 || directoryOffset + (ulong)directorySize > (ulong)storage.Length)
        {
            problem($"the bitmap directory at 0x{directoryOffset:x} ({directorySize} bytes) is misaligned or lies beyond the end of the file");
            return;
        }
        visit(new(Qcow2ReferenceKind.BitmapDirectory, new HostOffset((long)directoryOffset), directorySize));
        var directory = new byte[directorySize];
        storage.ReadAt((long)directoryOffset, directory);
        int pos = 0;
        for (uint i = 0; i < count && pos + 24 <= directory.Length; i++)
        {
            long tableOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(directory.AsSpan(pos));
            uint tableSize = Math.Min(BinaryPrimitives.ReadUInt32BigEndian(directory.AsSpan(pos + 8)), 1u << 24);
            int nameSize = BinaryPrimitives.ReadUInt16BigEndian(directory.AsSpan(pos + 18));
            uint extraSize = Math.Min(BinaryPrimitives.ReadUInt32BigEndian(directory.AsSpan(pos + 20)), 1u << 20);
            pos += (int)((24 + extraSize + nameSize + 7) & ~7L);
            if (tableOffset < 0 || tableOffset % g.ClusterSize != 0 || tableOffset + tableSize * 8L > storage.Length)
            {
                problem($"the table of bitmap {i} at 0x{tableOffset:x} is misaligned or lies beyond the end of the file");
                continue;
            }
            visit(new(Qcow2ReferenceKind.BitmapTable, new HostOffset(tableOffset), tableSize * 8L));
            foreach (var (index, entry) in ReadEntries(storage, tableOffset, tableSize))
            {
                var data = new HostOffset((long)(entry & Qcow2Entries.OffsetMask));
                if (data.IsNone) continue;
                if (!g.IsAligned(data)) problem($"bitmap {i} table entry {index} points to unaligned offset 0x{data.Value:x}");
                else visit(new(Qcow2ReferenceKind.BitmapData, data, g.ClusterSize));
            }
        }
    }

    // The non-zero 64-bit entries of a table, read a cluster's worth at a time.
    private static IEnumerable<(long Index, ulong Entry)> ReadEntries(IStorage storage, long offset, long count)
    {
        var chunk = new byte[64 * 1024];
        for (long first = 0; first < count; first += chunk.Length / 8)
        {
            int n = (int)Math.Min(chunk.Length / 8, count - first);
            storage.ReadAt(offset + first * 8, chunk.AsSpan(0, n * 8));
            for (int i = 0; i < n; i++)
            {
                ulong entry = BinaryPrimitives.ReadUInt64BigEndian(chunk.AsSpan(i * 8));
                if (entry != 0) yield return (first + i, entry);
            }
        }
    }
}
