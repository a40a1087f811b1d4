// Tables of pointers to tables (qcow2.rst "Cluster mapping" and "Host cluster management"): the L1 table
// points at L2 tables, the refcount table at refcount blocks. Both are cluster-aligned arrays of big-endian
// 64-bit entries, held in memory up to their last non-zero entry (a 32 MiB L1 table of a huge, mostly empty
// disk, or one a hostile header claims, costs nothing) and written back by 512-byte sector, so each entry
// update is atomic.
// Tables are objects with their own place in the file: the active L1, each snapshot's L1, the refcount
// table; a table that must grow is written anew elsewhere and the header switched to it.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>An L1 table or the refcount table. Not thread-safe: the image holds its lock.</summary>
internal sealed class Qcow2PointerTable : Qcow2MetadataStore
{
    private const int SectorEntries = 512 / 8;
    private readonly Qcow2MetadataKind _kind;
    private readonly SortedSet<int> _dirtySectors = new();
    private ulong[] _entries; // the first entries; the rest, up to Count, are zero

    private Qcow2PointerTable(Qcow2WriteOrder order, string name, Qcow2MetadataKind kind, HostOffset offset, int count, ulong[] entries)
        : base(order, name)
    {
        _kind = kind;
        Offset = offset;
        Count = count;
        _entries = entries;
    }

    /// <summary>Where the table starts in the file.</summary>
    public HostOffset Offset { get; }

    /// <summary>Number of entries.</summary>
    public int Count { get; }

    /// <summary>Bytes the table occupies (entries only; the clusters holding it may be larger).</summary>
    public long ByteLength => Count * 8L;

    /// <inheritdoc/>
    public override bool HasDirty => _dirtySectors.Count > 0;

    /// <summary>Reads a table of <paramref name="count"/> entries at <paramref name="offset"/>.</summary>
    public static Qcow2PointerTable Read(Qcow2WriteOrder order, string name, Qcow2MetadataKind kind, IStorage storage, HostOffset offset, int count)
    {
        // Two passes over 64 KiB chunks: find the last non-zero entry, then keep the entries up to it.
        var chunk = new byte[Math.Min(count * 8L, 64 << 10)];
        int used = 0;
        ForEachChunk(storage, offset, count, chunk, (first, n) =>
        {
            int last = chunk.AsSpan(0, n * 8).LastIndexOfAnyExcept((byte)0);
            if (last >= 0) used = first + last / 8 + 1;
        });
        var entries = new ulong[used];
        ForEachChunk(storage, offset, used, chunk, (first, n) =>
        {
            for (int i = 0; i < n; i++) entries[first + i] = BinaryPrimitives.ReadUInt64BigEndian(chunk.AsSpan(i * 8));
        });
        return new Qcow2PointerTable(order, name, kind, offset, count, entries);
    }

    /// <summary>
    /// A table at a new place with <paramref name="count"/> entries, starting as a copy of <paramref name="source"/>'s,
    /// wholly dirty (it is not on disk yet).
    /// </summary>
    public static Qcow2PointerTable CreateAt(Qcow2WriteOrder order, Qcow2PointerTable source, HostOffset offset, int count)
        => CreateAt(order, source, offset, count, source.Name, source._kind);

    /// <summary>A copy of <paramref name="source"/> in another role (a snapshot's L1 table made from the active one, or back).</summary>
    public static Qcow2PointerTable CreateAt(Qcow2WriteOrder order, Qcow2PointerTable source, HostOffset offset, int count, string name, Qcow2MetadataKind kind)
    {
        var entries = source._entries[..Math.Min(count, source._entries.Length)];
        var table = new Qcow2PointerTable(order, name, kind, offset, count, entries);
        for (int s = 0; s * SectorEntries < count; s++) table._dirtySectors.Add(s);
        return table;
    }

    /// <summary>The raw entry at <paramref name="index"/> (0 past the end).</summary>
    public ulong this[long index] => index < _entries.Length ? _entries[index] : 0;

    /// <summary>Changes an entry (written back later, in order).</summary>
    public void Set(long index, ulong entry)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Count);
        if (this[index] == entry) return;
        if (index >= _entries.Length) Array.Resize(ref _entries, (int)Math.Min(Count, Math.Max(index + 1, _entries.Length * 2L)));
        _entries[index] = entry;
        _dirtySectors.Add((int)(index / SectorEntries));
    }

    /// <summary>
    /// The cluster-aligned table offset in entry <paramref name="index"/> (bits 9-55), or None; a misaligned one is
    /// corruption named after <paramref name="path"/>.
    /// </summary>
    public HostOffset TargetOf(long index, Qcow2Geometry geometry, string path)
    {
        var offset = new HostOffset((long)(this[index] & Qcow2Entries.OffsetMask));
        if (!geometry.IsAligned(offset))
            throw VDiskException.Corrupt(path, $"{Name} entry {index} points to unaligned offset 0x{offset.Value:x}.");
        return offset;
    }

    /// <summary>The non-zero targets, with their indexes.</summary>
    public IEnumerable<(long Index, HostOffset Target)> Targets(Qcow2Geometry geometry, string path)
    {
        for (long i = 0; i < _entries.Length; i++)
            if (TargetOf(i, geometry, path) is { IsNone: false } target) yield return (i, target);
    }

    private static void ForEachChunk(IStorage storage, HostOffset offset, int count, byte[] chunk, Action<int, int> visit)
    {
        for (int first = 0; first < count; first += chunk.Length / 8)
        {
            int n = Math.Min(chunk.Length / 8, count - first);
            storage.ReadAt(offset.Value + first * 8L, chunk.AsSpan(0, n * 8));
            visit(first, n);
        }
    }

    /// <inheritdoc/>
    protected internal override void WriteDirty()
    {
        // Neighbouring dirty sectors go out as one write (a new table is written whole).
        var sectors = _dirtySectors.ToArray();
        for (int at = 0; at < sectors.Length;)
        {
            int run = 1;
            while (at + run < sectors.Length && sectors[at + run] == sectors[at] + run) run++;
            int first = sectors[at] * SectorEntries;
            int entries = Math.Min(run * SectorEntries, Count - first);
            var bytes = new byte[entries * 8];
            for (int i = 0; i < entries; i++) BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(i * 8), this[first + i]);
            Order.WriteMetadata(_kind, Offset + first * 8L, bytes);
            at += run;
        }
        _dirtySectors.Clear();
    }
}
