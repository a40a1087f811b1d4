// Grain directory and grain tables of one sparse extent (VMware Virtual Disk Format 1.1, "Grain Directory
// and Grain Tables"; QEMU block/vmdk.c l1_table / l2_cache). The directory and its redundant copy are held
// in memory; grain tables live in a bounded cache. Changed tables are written to both copies only after a
// barrier that makes the grains they point to durable, so a crash can leak grains but never expose garbage.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>GD, redundant GD and a grain table cache. Not thread-safe: the owning extent holds its lock.</summary>
internal sealed class VmdkGrainTables
{
    private const int TableBytes = VmdkSparseHeader.GtEntries * 4;
    private readonly IStorage _storage;
    private readonly VmdkSparseHeader _header;
    private readonly uint[] _gd;
    private readonly uint[]? _rgd;
    private readonly int _capacity;
    private readonly Dictionary<long, CachedTable> _cache = new();
    private long _clock;

    private sealed class CachedTable
    {
        public required uint[] Entries;
        public bool Dirty;
        public long LastUse;
    }

    /// <summary>Reads and checks the directories of an extent whose header passed validation.</summary>
    public VmdkGrainTables(IStorage storage, VmdkSparseHeader header, int cacheCapacity)
    {
        _storage = storage;
        _header = header;
        _capacity = Math.Max(2, cacheCapacity);
        long fileSectors = (storage.Length + VmdkSparseHeader.SectorSize - 1) / VmdkSparseHeader.SectorSize;
        _gd = ReadDirectory(header.GdOffset, "grain directory", fileSectors);
        if (header.HasRedundantGd) _rgd = ReadDirectory(header.RgdOffset, "redundant grain directory", fileSectors);
    }

    /// <summary>Grain directory entries (grain table sectors, 0 for none).</summary>
    public IReadOnlyList<uint> Directory => _gd;

    /// <summary>True when a grain table change waits to be written.</summary>
    public bool HasDirty => _cache.Values.Any(t => t.Dirty);

    /// <summary>The grain table at directory index <paramref name="gtIndex"/>, or null when none is allocated.</summary>
    public uint[]? Get(long gtIndex)
    {
        if (_cache.TryGetValue(gtIndex, out var cached))
        {
            cached.LastUse = ++_clock;
            return cached.Entries;
        }
        uint sector = _gd[gtIndex];
        if (sector == 0) return null;
        var raw = new byte[TableBytes];
        _storage.ReadAt(sector * (long)VmdkSparseHeader.SectorSize, raw);
        var entries = new uint[VmdkSparseHeader.GtEntries];
        for (int i = 0; i < entries.Length; i++) entries[i] = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(i * 4));
        Add(gtIndex, entries, dirty: false);
        return entries;
    }

    /// <summary>
    /// Sets one entry, allocating the table pair first when the directory has none: <paramref name="allocateTables"/>
    /// returns a free sector with room for both copies, which are zeroed and made durable before the directories point to them.
    /// </summary>
    public void Set(long gtIndex, int slot, uint value, Func<long> allocateTables)
    {
        var table = Get(gtIndex) ?? CreateTable(gtIndex, allocateTables());
        if (table[slot] == value) return;
        table[slot] = value;
        _cache[gtIndex].Dirty = true;
    }

    /// <summary>Records a grain table a stream writer has just written at <paramref name="sector"/>.</summary>
    public void AddWritten(long gtIndex, uint sector, uint[] entries)
    {
        _gd[gtIndex] = sector;
        Add(gtIndex, entries, dirty: false);
    }

    /// <summary>Writes every changed table to both directory copies, after a barrier for the grains they point to.</summary>
    public void WriteBack()
    {
        if (!HasDirty) return;
        _storage.Flush();
        foreach (var (gtIndex, table) in _cache.Where(t => t.Value.Dirty).ToList())
            WriteTable(gtIndex, table);
    }

    private uint[] CreateTable(long gtIndex, long sector)
    {
        long rgdSector = _rgd is null ? 0 : sector + VmdkSparseHeader.GtSectors;
        if (rgdSector + VmdkSparseHeader.GtSectors > uint.MaxValue || sector > uint.MaxValue)
            throw VDiskException.Unsupported(_storage.Name, "the extent file reached the 2 TiB limit of 32-bit grain table pointers.");
        _storage.WriteZeroes(sector * VmdkSparseHeader.SectorSize, (_rgd is null ? 1 : 2) * (long)TableBytes);
        _storage.Flush();
        Span<byte> entry = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(entry, (uint)sector);
        _storage.WriteAt(_header.GdOffset * VmdkSparseHeader.SectorSize + gtIndex * 4, entry);
        _gd[gtIndex] = (uint)sector;
        if (_rgd != null)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(entry, (uint)rgdSector);
            _storage.WriteAt(_header.RgdOffset * VmdkSparseHeader.SectorSize + gtIndex * 4, entry);
            _rgd[gtIndex] = (uint)rgdSector;
        }
        var entries = new uint[VmdkSparseHeader.GtEntries];
        Add(gtIndex, entries, dirty: false);
        return entries;
    }

    private void Add(long gtIndex, uint[] entries, bool dirty)
    {
        if (_cache.Count >= _capacity) Evict();
        _cache[gtIndex] = new CachedTable { Entries = entries, Dirty = dirty, LastUse = ++_clock };
    }

    private void Evict()
    {
        var (gtIndex, victim) = _cache.MinBy(t => t.Value.LastUse);
        if (victim.Dirty)
        {
            _storage.Flush(); // the grains this table points to reach the disk first
            WriteTable(gtIndex, victim);
        }
        _cache.Remove(gtIndex);
    }

    private void WriteTable(long gtIndex, CachedTable table)
    {
        var raw = new byte[TableBytes];
        for (int i = 0; i < table.Entries.Length; i++) BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(i * 4), table.Entries[i]);
        _storage.WriteAt(_gd[gtIndex] * (long)VmdkSparseHeader.SectorSize, raw);
        if (_rgd != null && _rgd[gtIndex] != 0) _storage.WriteAt(_rgd[gtIndex] * (long)VmdkSparseHeader.SectorSize, raw);
        table.Dirty = false;
    }

    // Every grain table a directory names must lie inside the file.
    private uint[] ReadDirectory(long sector, string what, long fileSectors)
    {
        long entries = _header.GdEntries;
        if (_header.GdIsAtEnd) throw new InvalidOperationException("the footer's directory must be used");
        var raw = new byte[entries * 4];
        _storage.ReadAt(sector * VmdkSparseHeader.SectorSize, raw);
        var gd = new uint[entries];
        for (long i = 0; i < entries; i++)
        {
            uint gt = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan((int)(i * 4)));
            if (gt != 0 && gt + (long)VmdkSparseHeader.GtSectors > fileSectors)
                throw VDiskException.Corrupt(_storage.Name, $"{what} entry {i} points to a grain table at sector {gt}, past the end of the file ({fileSectors} sectors).");
            gd[i] = gt;
        }
        return gd;
    }
}
