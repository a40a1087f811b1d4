// Persistent dirty bitmaps on disk (qcow2.rst "Bitmaps extension", "Bitmap directory", "Bitmap table", "Bitmaps";
// QEMU's block/qcow2-bitmap.c): the 24-byte header extension that locates the directory, the directory entries, and
// the checks QEMU makes before it trusts a bitmap. Everything here reads hostile input: every size and count is
// checked against QEMU's own limits before anything is allocated, and a bitmap that fails a check is reported as not
// usable with the reason, never trusted.
using System.Buffers.Binary;
using System.Text;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>Flags of a bitmap directory entry (qcow2.rst "Bitmap directory", flags field).</summary>
[Flags]
public enum Qcow2BitmapFlags : uint
{
    /// <summary>No flag set: a disabled, consistent bitmap.</summary>
    None = 0,
    /// <summary>in_use: the bitmap may be stale (a writer had the image open, or changed it without updating the bitmap).</summary>
    InUse = 1u << 0,
    /// <summary>auto: the bitmap is enabled, and QEMU marks every write in it.</summary>
    Auto = 1u << 1,
    /// <summary>extra_data_compatible: extra data a reader does not understand may be ignored.</summary>
    ExtraDataCompatible = 1u << 2,
}

/// <summary>One persistent dirty bitmap of a qcow2 image, as <c>qemu-img info</c> lists it.</summary>
/// <param name="Name">The bitmap's name (unique in the image).</param>
/// <param name="Granularity">Bytes of guest data one bit stands for (a power of two, 512 B to 2 GiB).</param>
/// <param name="Flags">The directory entry's flags.</param>
/// <param name="Type">The bitmap type (1 = dirty tracking, the only type qcow2 defines).</param>
/// <param name="Consistent">
/// True when the bitmap can be trusted: the image's bitmaps autoclear bit is set, the bitmap is not in use, it is a
/// dirty-tracking bitmap, and its table is sane for the current virtual size.
/// </param>
/// <param name="Problem">Why the bitmap cannot be trusted (null when it can).</param>
public sealed record Qcow2BitmapInfo(string Name, long Granularity, Qcow2BitmapFlags Flags, int Type, bool Consistent, string? Problem)
{
    /// <summary>The bitmap is enabled (the auto flag): QEMU records writes in it.</summary>
    public bool Enabled => (Flags & Qcow2BitmapFlags.Auto) != 0;
    /// <summary>The in_use flag: the bitmap may be stale.</summary>
    public bool InUse => (Flags & Qcow2BitmapFlags.InUse) != 0;
}

/// <summary>A guest byte range whose bitmap bits are set.</summary>
/// <param name="Offset">First guest byte.</param>
/// <param name="Length">Bytes (a whole number of granules, clipped to the virtual size).</param>
public readonly record struct DirtyRange(long Offset, long Length);

/// <summary>One bitmap directory entry as stored (qcow2.rst "Bitmap directory").</summary>
internal sealed record Qcow2BitmapEntry(long TableOffset, uint TableSize, uint Flags, byte Type, byte GranularityBits, byte[] NameBytes, byte[] ExtraData)
{
    public string Name => Encoding.UTF8.GetString(NameBytes);
    public long Granularity => 1L << GranularityBits;
    public bool InUse => (Flags & (uint)Qcow2BitmapFlags.InUse) != 0;
    /// <summary>Bytes the entry takes in the directory (24 + extra data + name, padded to 8).</summary>
    public int Size => (24 + ExtraData.Length + NameBytes.Length + 7) & ~7;
}

/// <summary>The bitmaps extension, the directory it points at, and QEMU's checks.</summary>
internal static class Qcow2BitmapDirectory
{
    /// <summary>QEMU's limits (block/qcow2.h, block/qcow2-bitmap.c).</summary>
    public const int MaxBitmaps = 65535, MaxNameBytes = 1023, MinGranularityBits = 9, MaxGranularityBits = 31, ExtensionLength = 24;
    public const long MaxDirectoryBytes = 1024L * MaxBitmaps, MaxTableEntries = 0x8000000, MaxBitmapBytes = 0x20000000;
    /// <summary>Table entries one listing checks at most (32 MiB of tables).</summary>
    public const long ListingTableBudget = 1L << 22;
    /// <summary>Type 1, the only type qcow2 defines: a dirty-tracking bitmap.</summary>
    public const byte DirtyTrackingType = 1;
    /// <summary>Table entry bits: 0 = all ones (when the offset is 0), 9-55 = data cluster offset, the rest reserved.</summary>
    public const ulong AllOnes = 1, OffsetMask = 0x00fffffffffffe00UL, ReservedMask = 0xff000000000001feUL;
    private const uint KnownFlags = (uint)(Qcow2BitmapFlags.InUse | Qcow2BitmapFlags.Auto | Qcow2BitmapFlags.ExtraDataCompatible);

    /// <summary>The bitmaps extension's fields.</summary>
    public readonly record struct Extension(uint Count, long DirectorySize, long DirectoryOffset)
    {
        public byte[] ToBytes()
        {
            var data = new byte[ExtensionLength];
            BinaryPrimitives.WriteUInt32BigEndian(data, Count);
            BinaryPrimitives.WriteUInt64BigEndian(data.AsSpan(8), (ulong)DirectorySize);
            BinaryPrimitives.WriteUInt64BigEndian(data.AsSpan(16), (ulong)DirectoryOffset);
            return data;
        }
    }

    /// <summary>True when the header has a bitmaps extension and the autoclear bit that says it is valid.</summary>
    public static bool Valid(Qcow2Header header)
        => header.Version >= 3 && (header.AutoclearFeatures & Qcow2Features.Bitmaps) != 0 && Find(header) != null;

    /// <summary>The raw bitmaps extension, or null.</summary>
    public static Qcow2HeaderExtension? Find(Qcow2Header header) => header.Extensions.FirstOrDefault(e => e.Type == Qcow2HeaderExtension.BitmapsType);

    /// <summary>
    /// The directory entries of a valid bitmaps extension (none when there is no valid extension), or why the
    /// extension or directory cannot be used: a wrong length, a count or size beyond QEMU's limits, a directory outside
    /// the file, an entry that overruns it, or a count that differs from the entries found.
    /// </summary>
    public static (List<Qcow2BitmapEntry> Entries, Extension? Located, string? Problem) Read(IStorage storage, Qcow2Header header)
    {
        var entries = new List<Qcow2BitmapEntry>();
        if (!Valid(header)) return (entries, null, null);
        var data = Find(header)!.Data;
        if (data.Length != ExtensionLength) return (entries, null, $"the bitmaps header extension is {data.Length} bytes long, not {ExtensionLength}");
        uint count = BinaryPrimitives.ReadUInt32BigEndian(data);
        uint reserved = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(4));
        ulong size = BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(8));
        ulong offset = BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(16));
        if (reserved != 0) return (entries, null, "the bitmaps header extension's reserved field is not zero");
        if (count == 0 || count > MaxBitmaps) return (entries, null, $"the bitmaps header extension counts {count} bitmaps (1 to {MaxBitmaps} allowed)");
        if (size == 0 || size > MaxDirectoryBytes) return (entries, null, $"the bitmap directory size is {size} bytes (1 to {MaxDirectoryBytes} allowed)");
        if (offset == 0 || offset % (ulong)header.ClusterSize != 0 || offset > (ulong)storage.Length || size > (ulong)storage.Length - offset)
            return (entries, null, $"the bitmap directory at 0x{offset:x} ({size} bytes) is misaligned or lies beyond the end of the file");
        var located = new Extension(count, (long)size, (long)offset);
        var directory = new byte[size];
        storage.ReadAt((long)offset, directory);
        int pos = 0;
        while (pos < directory.Length)
        {
            if (pos + 24 > directory.Length) return (entries, located, "the bitmap directory is broken: an entry runs past its end");
            if (entries.Count == count) return (entries, located, $"the bitmap directory holds more entries than the {count} its header extension counts");
            var e = directory.AsSpan(pos);
            int nameSize = BinaryPrimitives.ReadUInt16BigEndian(e[18..]);
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(e[20..]);
            long entrySize = (24L + extraSize + nameSize + 7) & ~7L;
            if (pos + entrySize > directory.Length) return (entries, located, "the bitmap directory is broken: an entry runs past its end");
            entries.Add(new Qcow2BitmapEntry(
                (long)BinaryPrimitives.ReadUInt64BigEndian(e),
                BinaryPrimitives.ReadUInt32BigEndian(e[8..]),
                BinaryPrimitives.ReadUInt32BigEndian(e[12..]),
                e[16], e[17],
                e.Slice(24 + (int)extraSize, nameSize).ToArray(),
                e.Slice(24, (int)extraSize).ToArray()));
            pos += (int)entrySize;
        }
        if (entries.Count != count) return (entries, located, $"the bitmap directory holds {entries.Count} entries, not the {count} its header extension counts");
        return (entries, located, null);
    }

    /// <summary>The directory bytes for <paramref name="entries"/>.</summary>
    public static byte[] Serialize(IReadOnlyList<Qcow2BitmapEntry> entries)
    {
        var bytes = new byte[entries.Sum(e => e.Size)];
        int pos = 0;
        foreach (var entry in entries)
        {
            var e = bytes.AsSpan(pos);
            BinaryPrimitives.WriteUInt64BigEndian(e, (ulong)entry.TableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(e[8..], entry.TableSize);
            BinaryPrimitives.WriteUInt32BigEndian(e[12..], entry.Flags);
            e[16] = entry.Type;
            e[17] = entry.GranularityBits;
            BinaryPrimitives.WriteUInt16BigEndian(e[18..], (ushort)entry.NameBytes.Length);
            BinaryPrimitives.WriteUInt32BigEndian(e[20..], (uint)entry.ExtraData.Length);
            entry.ExtraData.CopyTo(e[24..]);
            entry.NameBytes.CopyTo(e[(24 + entry.ExtraData.Length)..]);
            pos += entry.Size;
        }
        return bytes;
    }

    /// <summary>Bitmap table entries a bitmap of 2^<paramref name="granularityBits"/>-byte granules needs for <paramref name="virtualSize"/> bytes.</summary>
    public static long TableEntriesFor(long virtualSize, int granularityBits, int clusterBits)
    {
        long granules = (virtualSize + (1L << granularityBits) - 1) >> granularityBits;
        long bitsPerCluster = 8L << clusterBits;
        return (granules + bitsPerCluster - 1) / bitsPerCluster;
    }

    /// <summary>
    /// Why QEMU would not trust <paramref name="entry"/> in an image of <paramref name="virtualSize"/> bytes (null when
    /// it would): its flags, type, granularity, name, extra data, and a table that does not fit the disk or the file.
    /// Table entries are checked by <see cref="CheckTable"/>.
    /// </summary>
    public static string? Problem(Qcow2BitmapEntry entry, long virtualSize, int clusterBits, long fileLength)
    {
        if (entry.InUse) return "the bitmap is in use (a writer had the image open or changed it without updating the bitmap): it may be stale";
        if ((entry.Flags & ~KnownFlags) != 0) return $"the bitmap has unknown flags 0x{entry.Flags & ~KnownFlags:x}";
        if (entry.Type != DirtyTrackingType) return $"the bitmap has type {entry.Type}, not 1 (dirty tracking)";
        if (entry.GranularityBits is < MinGranularityBits or > MaxGranularityBits) return $"the bitmap's granularity_bits is {entry.GranularityBits} ({MinGranularityBits} to {MaxGranularityBits} allowed)";
        if (entry.NameBytes.Length is 0 or > MaxNameBytes) return $"the bitmap's name is {entry.NameBytes.Length} bytes long (1 to {MaxNameBytes} allowed)";
        if (entry.ExtraData.Length != 0) return "the bitmap has extra data, which QEMU does not support";
        long needed = TableEntriesFor(virtualSize, entry.GranularityBits, clusterBits);
        if (entry.TableSize != needed || needed > MaxTableEntries || (needed << clusterBits) > MaxBitmapBytes)
            return $"the bitmap table has {entry.TableSize} entries, but a {virtualSize}-byte disk needs {needed} at this granularity";
        if (entry.TableOffset <= 0 || (entry.TableOffset & ((1L << clusterBits) - 1)) != 0 || entry.TableOffset > fileLength - entry.TableSize * 8L)
            return $"the bitmap table at 0x{entry.TableOffset:x} is misaligned or lies beyond the end of the file";
        return null;
    }

    /// <summary>Why the table entries of <paramref name="entry"/> cannot be used (reserved bits, misaligned or out-of-file data), or null.</summary>
    public static string? CheckTable(IStorage storage, Qcow2BitmapEntry entry, int clusterBits)
    {
        long clusterMask = (1L << clusterBits) - 1;
        foreach (var (index, value) in TableEntries(storage, entry))
        {
            long data = (long)(value & OffsetMask);
            if ((value & ReservedMask) != 0 || (data != 0 && (value & AllOnes) != 0))
                return $"bitmap table entry {index} has reserved bits set: 0x{value:x16}";
            if ((data & clusterMask) != 0 || data > storage.Length - (1L << clusterBits))
                return $"bitmap table entry {index} points to 0x{data:x}, misaligned or beyond the end of the file";
        }
        return null;
    }

    /// <summary>The table entries of <paramref name="entry"/>, read 64 KiB at a time.</summary>
    public static IEnumerable<(long Index, ulong Value)> TableEntries(IStorage storage, Qcow2BitmapEntry entry)
    {
        var chunk = new byte[(int)Math.Min(entry.TableSize * 8L, 64 << 10)];
        for (long first = 0; first < entry.TableSize; first += chunk.Length / 8)
        {
            int n = (int)Math.Min(chunk.Length / 8, entry.TableSize - first);
            storage.ReadAt(entry.TableOffset + first * 8, chunk.AsSpan(0, n * 8));
            for (int i = 0; i < n; i++) yield return (first + i, BinaryPrimitives.ReadUInt64BigEndian(chunk.AsSpan(i * 8)));
        }
    }

    /// <summary>
    /// What <c>qemu-img info</c> would say about <paramref name="entry"/>. <paramref name="tableBudget"/> bounds the table
    /// entries checked over a whole listing (a hostile directory may name thousands of large tables): a table past it
    /// is not trusted.
    /// </summary>
    public static Qcow2BitmapInfo Describe(IStorage storage, Qcow2BitmapEntry entry, long virtualSize, int clusterBits, ref long tableBudget)
    {
        string? problem = Problem(entry, virtualSize, clusterBits, storage.Length);
        if (problem is null && (tableBudget -= entry.TableSize) < 0) problem = "the image has too many bitmap table entries to check";
        problem ??= CheckTable(storage, entry, clusterBits);
        long granularity = entry.GranularityBits < 63 ? 1L << entry.GranularityBits : 0;
        return new Qcow2BitmapInfo(entry.Name, granularity, (Qcow2BitmapFlags)entry.Flags, entry.Type, problem is null, problem);
    }

    /// <summary>Checks a name and granularity for a new bitmap as QEMU does; throws a clear error when they cannot be stored.</summary>
    public static int CheckNew(string path, string name, long granularity, long virtualSize, int clusterBits, IEnumerable<Qcow2BitmapEntry> existing)
    {
        int nameBytes = string.IsNullOrEmpty(name) ? 0 : Encoding.UTF8.GetByteCount(name);
        if (nameBytes is 0 or > MaxNameBytes)
            throw VDiskException.Invalid(path, $"{path}: a bitmap name must be 1 to {MaxNameBytes} bytes of UTF-8; '{name}' is {nameBytes}.");
        if (granularity < 1L << MinGranularityBits || granularity > 1L << MaxGranularityBits || (granularity & (granularity - 1)) != 0)
            throw VDiskException.Invalid(path, $"{path}: a bitmap granularity must be a power of two from 512 bytes to 2 GiB; {granularity} is not.");
        int bits = System.Numerics.BitOperations.Log2((ulong)granularity);
        long entries = TableEntriesFor(virtualSize, bits, clusterBits);
        if (entries > MaxTableEntries || (entries << clusterBits) > MaxBitmapBytes)
            throw VDiskException.Invalid(path, $"{path}: a bitmap of {granularity}-byte granules over {virtualSize} bytes would take too much space; use a larger granularity.");
        var list = existing.ToList();
        if (list.Any(e => e.Name == name))
            throw new VDiskException(VDiskErrorKind.AlreadyExists, path, $"{path} already has a bitmap named '{name}'.");
        if (list.Count >= MaxBitmaps)
            throw VDiskException.Invalid(path, $"{path} already has {list.Count} bitmaps, the most qcow2 allows.");
        return bits;
    }
}
