// Persistent dirty bitmaps in the metadata core (qcow2.rst "Bitmaps extension", "Bitmap directory", "Bitmap table",
// "Bitmaps"; QEMU's block/qcow2-bitmap.c): list, read as dirty guest ranges, add, remove and clear, and keep every
// bitmap honest while VDisk itself writes the image.
// Add, remove and clear are crash-safe the way the snapshot table is: the new bitmap tables and the new directory go
// to fresh clusters, their counts and bytes are made durable, the header switches the extension in one sector write,
// and only then do the old directory, tables and data lose their references. A power cut leaves the old bitmap set or
// the new one, with leaked clusters at worst. When the header has no bitmaps extension yet and the image has a backing
// file, the name is first moved out of the way (its own one-sector switch) so the extension can be added without
// touching it.
// VDisk does not record its own writes in bitmaps. Before the first change to guest content (a data write, an L2
// entry, a resize, a snapshot revert, an unsafe rebase) every bitmap gets the in_use flag, durably, with the
// autoclear bit kept: QEMU then reports those bitmaps as inconsistent ("in-use") instead of trusting a stale one,
// and their clusters stay referenced, so qemu-img check stays clean. QEMU sets the same flag whenever it opens an
// image for writing.
using System.Text;
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Qcow2;

internal sealed partial class Qcow2Image
{
    /// <summary>The barrier between durable in_use flags and the first guest change (see <see cref="Qcow2WriteOrder.SkipBarrierBefore"/>).</summary>
    public const string BitmapsInUseBarrier = "guest change after bitmaps in use";
    private const int BitmapsExtensionBytes = 8 + Qcow2BitmapDirectory.ExtensionLength;

    // True when no valid bitmap can go stale: the image has none, or every one is durably marked in use.
    private volatile bool _bitmapsGuarded = true;

    /// <summary>The persistent bitmaps, as <c>qemu-img info</c> lists them. A directory that cannot be read is corruption.</summary>
    public IReadOnlyList<Qcow2BitmapInfo> Bitmaps()
    {
        lock (_lock)
        {
            long budget = Qcow2BitmapDirectory.ListingTableBudget;
            var listed = new List<Qcow2BitmapInfo>();
            foreach (var entry in ReadBitmaps()) listed.Add(Qcow2BitmapDirectory.Describe(Storage, entry, Header.Size, Geometry.ClusterBits, ref budget));
            return listed;
        }
    }

    /// <summary>
    /// The guest ranges the consistent bitmap <paramref name="name"/> marks dirty, in order, adjacent granules merged,
    /// clipped to the virtual size. The bitmap is read lazily, one data cluster at a time. A bitmap that is missing or
    /// cannot be trusted (in use, a bad table) is an error naming the reason.
    /// </summary>
    public IEnumerable<DirtyRange> DirtyRanges(string name)
    {
        lock (_lock)
        {
            var entry = FindBitmap(ReadBitmaps(), name);
            string? problem = Qcow2BitmapDirectory.Problem(entry, Header.Size, Geometry.ClusterBits, Storage.Length)
                ?? Qcow2BitmapDirectory.CheckTable(Storage, entry, Geometry.ClusterBits);
            if (problem != null)
                throw VDiskException.Unsupported(Storage.Name, $"bitmap '{name}' cannot be used: {problem}.");
            return ReadRanges(entry, Header.Size);
        }
    }

    /// <summary>
    /// Adds an empty, enabled (auto) persistent bitmap named <paramref name="name"/> whose bits stand for
    /// <paramref name="granularity"/> bytes, as <c>qemu-img bitmap --add</c> does; QEMU marks every later write in it.
    /// The default granularity is QEMU's: the cluster size, at least 4 KiB and at most 64 KiB.
    /// </summary>
    public Qcow2BitmapInfo AddBitmap(string name, long? granularity = null)
    {
        lock (_lock)
        {
            CheckWritable();
            if (Header.Version < 3)
                throw VDiskException.Unsupported(Storage.Name, "persistent bitmaps need a version 3 (compat 1.1) qcow2 image.");
            var entries = ReadBitmaps();
            int bits = Qcow2BitmapDirectory.CheckNew(Storage.Name, name, granularity ?? Math.Clamp(Geometry.ClusterSize, 4096, 65536), Header.Size, Geometry.ClusterBits, entries);
            FlushLocked();
            var (table, size) = WriteEmptyBitmapTable(bits);
            var added = new Qcow2BitmapEntry(table.Value, size, (uint)Qcow2BitmapFlags.Auto, Qcow2BitmapDirectory.DirtyTrackingType, (byte)bits,
                Encoding.UTF8.GetBytes(name), Array.Empty<byte>());
            entries.Add(added);
            PublishBitmaps(entries, Array.Empty<Qcow2BitmapEntry>());
            return Describe(added);
        }
    }

    /// <summary>Removes the bitmap <paramref name="name"/> and gives back its clusters (<c>qemu-img bitmap --remove</c>).</summary>
    public void RemoveBitmap(string name)
    {
        lock (_lock)
        {
            CheckWritable();
            var entries = ReadBitmaps();
            var removed = FindBitmap(entries, name);
            FlushLocked();
            entries.Remove(removed);
            PublishBitmaps(entries, new[] { removed });
        }
    }

    /// <summary>
    /// Empties the bitmap <paramref name="name"/> (<c>qemu-img bitmap --clear</c>): it gets a fresh all-zero table sized for
    /// the current virtual size and loses its in_use flag, so it tracks changes from now on; its other flags stay.
    /// </summary>
    public Qcow2BitmapInfo ClearBitmap(string name)
    {
        lock (_lock)
        {
            CheckWritable();
            var entries = ReadBitmaps();
            var old = FindBitmap(entries, name);
            if (old.Type != Qcow2BitmapDirectory.DirtyTrackingType || old.GranularityBits is < Qcow2BitmapDirectory.MinGranularityBits or > Qcow2BitmapDirectory.MaxGranularityBits)
                throw VDiskException.Unsupported(Storage.Name, $"bitmap '{name}' has type {old.Type} and granularity_bits {old.GranularityBits}, which VDisk cannot clear; remove it instead.");
            FlushLocked();
            var (table, size) = WriteEmptyBitmapTable(old.GranularityBits);
            var cleared = old with { TableOffset = table.Value, TableSize = size, Flags = old.Flags & ~(uint)Qcow2BitmapFlags.InUse };
            entries[entries.IndexOf(old)] = cleared;
            PublishBitmaps(entries, new[] { old });
            return Describe(cleared);
        }
    }

    /// <summary>
    /// Called before anything that changes guest content: the first time, every bitmap gets the in_use flag, durably
    /// (QEMU then treats it as inconsistent rather than trusting a bitmap that missed this change). A directory that
    /// cannot be read loses the autoclear bit instead, as after a writer that does not know bitmaps.
    /// </summary>
    internal void BeforeGuestChange()
    {
        if (_bitmapsGuarded) return;
        lock (_lock)
        {
            if (_bitmapsGuarded) return;
            var (entries, located, problem) = Qcow2BitmapDirectory.Read(Storage, Header);
            if (problem != null || located is null)
                _header.Update(h => h.AutoclearFeatures &= ~Qcow2Features.Bitmaps);
            else if (entries.Any(e => !e.InUse))
            {
                var marked = entries.Select(e => e with { Flags = e.Flags | (uint)Qcow2BitmapFlags.InUse }).ToList();
                _order.WriteMetadata(Qcow2MetadataKind.BitmapDirectory, new HostOffset(located.Value.DirectoryOffset), Qcow2BitmapDirectory.Serialize(marked));
                _order.Barrier(BitmapsInUseBarrier);
            }
            _bitmapsGuarded = true;
        }
    }

    // The directory's ranges for the overlap check, and whether a guest change must mark bitmaps first (writable open).
    private void GuardBitmaps()
    {
        var (_, located, problem) = Qcow2BitmapDirectory.Read(Storage, Header);
        _guard.SetRanges(Qcow2MetadataKind.BitmapDirectory, located is { } d && problem is null
            ? new[] { (new HostOffset(d.DirectoryOffset), d.DirectorySize) }
            : Array.Empty<(HostOffset, long)>());
        _bitmapsGuarded = !Qcow2BitmapDirectory.Valid(Header);
    }

    private Qcow2BitmapInfo Describe(Qcow2BitmapEntry entry)
    {
        long budget = Qcow2BitmapDirectory.ListingTableBudget;
        return Qcow2BitmapDirectory.Describe(Storage, entry, Header.Size, Geometry.ClusterBits, ref budget);
    }

    private List<Qcow2BitmapEntry> ReadBitmaps()
    {
        var (entries, _, problem) = Qcow2BitmapDirectory.Read(Storage, Header);
        if (problem != null) throw VDiskException.Corrupt(Storage.Name, $"its bitmaps cannot be read: {problem}.");
        return entries;
    }

    private Qcow2BitmapEntry FindBitmap(List<Qcow2BitmapEntry> entries, string name)
        => entries.FirstOrDefault(e => e.Name == name)
            ?? throw new VDiskException(VDiskErrorKind.NotFound, Storage.Name, $"{Storage.Name} has no bitmap named '{name}'" +
                (entries.Count == 0 ? "; it has no bitmaps." : $"; its bitmaps are {string.Join(", ", entries.Select(e => $"'{e.Name}'"))}."));

    // A bitmap table of zero entries (every granule clean) for the current virtual size, in fresh clusters.
    private (HostOffset Offset, uint Entries) WriteEmptyBitmapTable(int granularityBits)
    {
        long entries = Qcow2BitmapDirectory.TableEntriesFor(Header.Size, granularityBits, Geometry.ClusterBits);
        var offset = Refcounts.AllocateContiguous(ClustersFor(entries * 8));
        _order.WriteMetadata(Qcow2MetadataKind.BitmapTable, offset, new byte[entries * 8]);
        return (offset, (uint)entries);
    }

    // Writes the directory for `entries` to fresh clusters, switches the header to it (after everything written before
    // is durable), then drops the references of the old directory and of the `dropped` bitmaps' tables and data.
    private void PublishBitmaps(List<Qcow2BitmapEntry> entries, IReadOnlyList<Qcow2BitmapEntry> dropped)
    {
        var (_, old, _) = Qcow2BitmapDirectory.Read(Storage, Header);
        var bytes = Qcow2BitmapDirectory.Serialize(entries);
        var directory = HostOffset.None;
        if (entries.Count > 0)
        {
            directory = Refcounts.AllocateContiguous(ClustersFor(bytes.Length));
            _order.WriteMetadata(Qcow2MetadataKind.BitmapTable, directory, bytes);
        }
        WriteBackAll(); // the first header barrier below makes the tables, the directory and their counts durable
        byte[]? extension = entries.Count == 0 ? null : new Qcow2BitmapDirectory.Extension((uint)entries.Count, bytes.Length, directory.Value).ToBytes();
        if (extension != null && Qcow2BitmapDirectory.Find(Header) is null && Header.BackingFile != null)
            _header.UpdateAtomically(_ => { }, "Moving the backing file name to make room for the bitmaps extension", Storage.Name, BitmapsExtensionBytes);
        _header.UpdateAtomically(h =>
        {
            int at = h.Extensions.FindIndex(e => e.Type == Qcow2HeaderExtension.BitmapsType);
            if (extension is null) h.Extensions.RemoveAt(at);
            else if (at >= 0) h.Extensions[at] = new Qcow2HeaderExtension(Qcow2HeaderExtension.BitmapsType, extension);
            else h.Extensions.Add(new Qcow2HeaderExtension(Qcow2HeaderExtension.BitmapsType, extension));
        }, "Switching the bitmap directory", Storage.Name);
        if (extension != null && (Header.AutoclearFeatures & Qcow2Features.Bitmaps) == 0)
            _header.UpdateAtomically(h => h.AutoclearFeatures |= Qcow2Features.Bitmaps, "Setting the bitmaps autoclear bit", Storage.Name); // after the extension: a stale one is never vouched for
        _guard.SetRanges(Qcow2MetadataKind.BitmapDirectory, new[] { (directory, (long)bytes.Length) });
        if (old is { } o) Refcounts.Decrement(new HostOffset(o.DirectoryOffset), o.DirectorySize, dereferencedBy: null); // the header no longer points at it, durably
        foreach (var bitmap in dropped) FreeBitmapClusters(bitmap);
        FlushLocked();
        _bitmapsGuarded = entries.All(e => e.InUse);
    }

    // Drops the references of a bitmap's table and data clusters; a table that is not sane is left alone (leaked, never
    // freed under someone else).
    private void FreeBitmapClusters(Qcow2BitmapEntry bitmap)
    {
        long clusterMask = Geometry.ClusterSize - 1;
        if (bitmap.TableSize == 0 || bitmap.TableSize > Qcow2BitmapDirectory.MaxTableEntries || bitmap.TableOffset <= 0
            || (bitmap.TableOffset & clusterMask) != 0 || bitmap.TableOffset > Storage.Length - bitmap.TableSize * 8L
            || Qcow2BitmapDirectory.CheckTable(Storage, bitmap, Geometry.ClusterBits) != null)
            return;
        foreach (var (_, value) in Qcow2BitmapDirectory.TableEntries(Storage, bitmap).ToList())
            if ((value & Qcow2BitmapDirectory.OffsetMask) is var data and not 0)
                Refcounts.Decrement(new HostOffset((long)data), Geometry.ClusterSize, dereferencedBy: null);
        Refcounts.Decrement(new HostOffset(bitmap.TableOffset), bitmap.TableSize * 8L, dereferencedBy: null);
    }

    // Bit k of the bitmap (byte k / 8, bit k % 8: QEMU serialises little-endian words) stands for granule k.
    private IEnumerable<DirtyRange> ReadRanges(Qcow2BitmapEntry entry, long virtualSize)
    {
        var storage = Storage;
        int granularityBits = entry.GranularityBits;
        long granules = (virtualSize + (1L << granularityBits) - 1) >> granularityBits;
        long bitsPerCluster = 8L * Geometry.ClusterSize;
        var data = new byte[Geometry.ClusterSize];
        long runStart = -1;
        foreach (var (index, value) in Qcow2BitmapDirectory.TableEntries(storage, entry))
        {
            long first = index * bitsPerCluster;
            long count = Math.Min(bitsPerCluster, granules - first);
            if (count <= 0) break;
            long host = (long)(value & Qcow2BitmapDirectory.OffsetMask);
            if (host == 0)
            {
                if ((value & Qcow2BitmapDirectory.AllOnes) != 0)
                {
                    if (runStart < 0) runStart = first;
                }
                else if (runStart >= 0)
                {
                    yield return Range(runStart, first);
                    runStart = -1;
                }
                continue;
            }
            storage.ReadAt(host, data);
            for (long bit = 0; bit < count;)
            {
                long change = NextChange(data, bit, count, set: runStart >= 0);
                if (change < count)
                {
                    if (runStart >= 0)
                    {
                        yield return Range(runStart, first + change);
                        runStart = -1;
                    }
                    else runStart = first + change;
                }
                bit = change;
            }
        }
        if (runStart >= 0) yield return Range(runStart, granules);

        DirtyRange Range(long from, long to)
        {
            long start = from << granularityBits;
            return new DirtyRange(start, Math.Min(to << granularityBits, virtualSize) - start);
        }
    }

    // The first bit at or after `from` (below `count`) whose value is not `set`; `count` when there is none. Whole bytes
    // of the same value are skipped at vector speed.
    private static long NextChange(byte[] bits, long from, long count, bool set)
    {
        long i = from;
        for (; i < count && (i & 7) != 0; i++)
            if (Bit(bits, i) != set) return i;
        int firstByte = (int)(i >> 3), endByte = (int)(count >> 3);
        if (firstByte < endByte)
        {
            int other = bits.AsSpan(firstByte, endByte - firstByte).IndexOfAnyExcept(set ? (byte)0xff : (byte)0);
            i = (long)(other < 0 ? endByte : firstByte + other) << 3;
        }
        for (; i < count; i++)
            if (Bit(bits, i) != set) return i;
        return count;
    }

    private static bool Bit(byte[] bits, long index) => (bits[index >> 3] & (1 << (int)(index & 7))) != 0;
}
