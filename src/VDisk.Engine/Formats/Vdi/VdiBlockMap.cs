// The VDI block map (VirtualBox VDICore.h "Block 'pointer'"; QEMU block/vdi.c bmap): one little-endian
// uint32 per guest block giving the index of its data block in the file, or VDI_UNALLOCATED (never
// written) or VDI_DISCARDED (reads as zeroes). Validated entry by entry on load; changed entries are
// tracked per sector and written back together.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Vdi;

/// <summary>The in-memory block map of one VDI image. Not thread-safe: the driver serialises access.</summary>
internal sealed class VdiBlockMap
{
    /// <summary>VDI_UNALLOCATED (VDI_IMAGE_BLOCK_FREE): never allocated; reads from a parent, or as zeroes.</summary>
    public const uint Unallocated = 0xffffffff;
    /// <summary>VDI_DISCARDED (VDI_IMAGE_BLOCK_ZERO): not allocated, reads as zeroes.</summary>
    public const uint Discarded = 0xfffffffe;
    private const int EntriesPerSector = VdiHeader.SectorSize / 4;

    private readonly uint[] _entries;
    private readonly bool[] _dirtySectors;
    private bool _anyDirty;

    private VdiBlockMap(uint[] entries)
    {
        _entries = entries;
        _dirtySectors = new bool[(entries.Length + EntriesPerSector - 1) / EntriesPerSector];
    }

    /// <summary>Number of entries (blocks_in_image).</summary>
    public int Count => _entries.Length;

    /// <summary>True when some entries changed since the last <see cref="WriteBack"/>.</summary>
    public bool HasDirty => _anyDirty;

    /// <summary>True for an entry that names a data block in the file.</summary>
    public static bool IsAllocated(uint entry) => entry < Discarded;

    /// <summary>The entry of guest block <paramref name="block"/>.</summary>
    public uint this[long block] => _entries[block];

    /// <summary>A map with every entry set by <paramref name="entry"/> (index → value), for new images.</summary>
    public static VdiBlockMap Create(uint count, Func<uint, uint> entry)
    {
        var entries = new uint[count];
        for (uint i = 0; i < count; i++) entries[i] = entry(i);
        return new VdiBlockMap(entries);
    }

    /// <summary>
    /// Parses <paramref name="bytes"/> (blocks_in_image little-endian entries) and checks that every allocated
    /// entry is below blocks_allocated and that no two guest blocks share a data block.
    /// </summary>
    public static VdiBlockMap Parse(ReadOnlySpan<byte> bytes, VdiHeader header, string path)
    {
        var entries = new uint[header.BlocksInImage];
        var used = new ulong[(header.BlocksAllocated + 63) / 64]; // one bit per data block
        for (int i = 0; i < entries.Length; i++)
        {
            uint entry = BinaryPrimitives.ReadUInt32LittleEndian(bytes[(i * 4)..]);
            entries[i] = entry;
            if (!IsAllocated(entry)) continue;
            if (entry >= header.BlocksAllocated)
                throw VDiskException.Corrupt(path, $"VDI block map entry {i} is {entry}, beyond blocks_allocated ({header.BlocksAllocated}).");
            ulong bit = 1UL << (int)(entry % 64);
            if ((used[entry / 64] & bit) != 0)
                throw VDiskException.Corrupt(path, $"VDI block map entries {Array.IndexOf(entries, entry)} and {i} both point at data block {entry}.");
            used[entry / 64] |= bit;
        }
        return new VdiBlockMap(entries);
    }

    /// <summary>Sets the entry of guest block <paramref name="block"/> and marks its sector for write-back.</summary>
    public void Set(long block, uint entry)
    {
        if (_entries[block] == entry) return;
        _entries[block] = entry;
        _dirtySectors[block / EntriesPerSector] = true;
        _anyDirty = true;
    }

    /// <summary>Serialises every entry (the map proper, without sector padding).</summary>
    public void WriteTo(Span<byte> destination)
    {
        for (int i = 0; i < _entries.Length; i++)
            BinaryPrimitives.WriteUInt32LittleEndian(destination[(i * 4)..], _entries[i]);
    }

    /// <summary>Writes the changed sectors of the map at <paramref name="mapOffset"/>, coalescing neighbours.</summary>
    public void WriteBack(IStorage storage, long mapOffset)
    {
        if (!_anyDirty) return;
        for (int first = 0; first < _dirtySectors.Length; first++)
        {
            if (!_dirtySectors[first]) continue;
            int end = first;
            while (end < _dirtySectors.Length && _dirtySectors[end]) _dirtySectors[end++] = false;
            int firstEntry = first * EntriesPerSector;
            int entryCount = Math.Min(end * EntriesPerSector, _entries.Length) - firstEntry;
            var buffer = new byte[entryCount * 4];
            for (int i = 0; i < entryCount; i++)
                BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(i * 4), _entries[firstEntry + i]);
            storage.WriteAt(mapOffset + firstEntry * 4L, buffer);
            first = end;
        }
        _anyDirty = false;
    }
}
