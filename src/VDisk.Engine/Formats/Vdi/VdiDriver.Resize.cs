// Resizing a VDI image (VirtualBox VDICore.h VDIHEADER1 disk_size, blocks_in_image, blocks_allocated, offset_bmap,
// offset_data; the block map). QEMU 7.2 cannot resize VDI images ("Image format driver does not support resize").
// VDisk grows them: in place when the block map has room before the data area, else by moving the map
// (VdiDriver.Relocate.cs); and shrinks them, moving the data blocks that would lie past the new blocks_allocated into
// the holes left by dropped blocks so the data area stays dense, as qemu-img check requires. The header's fields
// change in one sector write, last.
using System.Buffers.Binary;
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Vdi;

public sealed partial class VdiDriver
{
    /// <summary>
    /// Resizes the disk to <paramref name="size"/> bytes (a whole number of sectors). Growing maps the new blocks as
    /// unallocated, or, for a static image or with <paramref name="mode"/> other than Off, allocates them at the end
    /// (sparse for Metadata, reserved for Falloc, written with zeroes for Full). Shrinking drops the blocks past the end.
    /// </summary>
    internal void Resize(long size, Preallocation mode, CancellationToken cancel)
    {
        CheckWritable();
        lock (_lock)
        {
            if (size > VdiHeader.MaxDiskSize)
                throw VDiskException.Invalid(Storage.Name, $"A {size}-byte disk is too large for VDI (at most {VdiHeader.MaxDiskSize} bytes).");
            uint blocks = (uint)((size + VdiHeader.BlockSize - 1) / VdiHeader.BlockSize);
            if (size >= VirtualSize) blocks = Math.Max(blocks, (uint)_map.Count); // a map longer than the size stays
            WriteMetadata();
            Storage.Flush();
            uint mapOffset = _header.BlockMapOffset, dataOffset = _header.DataOffset, allocated;
            if (size < VirtualSize) allocated = ShrinkMap(blocks, cancel);
            else if (_header.BlockMapOffset + blocks * 4L <= _header.DataOffset) allocated = GrowMap(blocks, mode, cancel);
            else (mapOffset, dataOffset, allocated) = GrowMovingMap(blocks, mode, cancel);
            var sector = new byte[VdiHeader.SectorSize];
            Storage.ReadAt(0, sector);
            VdiHeader.PutU32(sector, VdiHeader.BlockMapOffsetOffset, mapOffset);
            VdiHeader.PutU32(sector, VdiHeader.DataOffsetOffset, dataOffset);
            BinaryPrimitives.WriteInt64LittleEndian(sector.AsSpan(VdiHeader.DiskSizeOffset), size);
            VdiHeader.PutU32(sector, VdiHeader.BlocksInImageOffset, blocks);
            VdiHeader.PutU32(sector, VdiHeader.BlocksAllocatedOffset, allocated);
            Storage.WriteAt(0, sector); // one sector: the size, map place and length, data area and block count switch together
            Storage.Flush();
            long fileEnd = _header.BlockHostOffset(allocated);
            if (size < VirtualSize && Storage.Length > fileEnd) Storage.SetLength(fileEnd);
            Reload(sector);
        }
    }

    // Writes the entries of the new blocks after the current map (they are not part of it until the header says so) and
    // allocates data blocks for them when asked. Returns the new blocks_allocated.
    private uint GrowMap(uint blocks, Preallocation mode, CancellationToken cancel)
    {
        int count = (int)(blocks - (uint)_map.Count);
        var entries = new byte[count * 4];
        uint next = NewBlockEntries(entries, _header.BlocksAllocated, _header.DataOffset, mode, cancel);
        Storage.WriteAt(_header.BlockMapOffset + _map.Count * 4L, entries);
        Storage.Flush(); // the data blocks and the entries that point at them, before the header counts them
        return next;
    }

    // Fills <entries> (the map entries of the blocks a grow adds) with Unallocated, or, for a static image or a
    // preallocation mode, with data blocks from index <next> of a data area at <dataOffset>, reserved or written as the
    // mode asks. Returns blocks_allocated after them.
    private uint NewBlockEntries(Span<byte> entries, uint next, long dataOffset, Preallocation mode, CancellationToken cancel)
    {
        bool allocate = IsStatic || mode != Preallocation.Off;
        int count = entries.Length / 4;
        for (int i = 0; i < count; i++)
            VdiHeader.PutU32(entries, i * 4, allocate ? next + (uint)i : VdiBlockMap.Unallocated);
        if (!allocate) return next;
        long start = dataOffset + (long)next * VdiHeader.BlockSize, length = (long)count * VdiHeader.BlockSize;
        if (mode == Preallocation.Full) Raw.RawDriver.WriteZeroFill(Storage, start, length, cancel);
        else if (mode == Preallocation.Falloc) Storage.Preallocate(start, length);
        else Storage.SetLength(Math.Max(Storage.Length, start + length));
        return next + (uint)count;
    }

    // Drops the blocks past the new end, then moves every kept data block whose index would lie past the new
    // blocks_allocated into a free index below it (data first, then the entry). Returns the new blocks_allocated.
    private uint ShrinkMap(uint blocks, CancellationToken cancel)
    {
        for (long g = blocks; g < _map.Count; g++)
            if (IsAllocated(g)) _map.Set(g, VdiBlockMap.Unallocated);
        _map.WriteBack(Storage, _header.BlockMapOffset);
        Storage.Flush();
        var owner = new Dictionary<uint, long>();
        for (long g = 0; g < blocks; g++)
            if (IsAllocated(g)) owner[_map[g]] = g;
        uint kept = (uint)owner.Count;
        var holes = new Queue<uint>(Enumerable.Range(0, (int)kept).Select(i => (uint)i).Where(i => !owner.ContainsKey(i)));
        var buffer = new byte[VdiHeader.BlockSize];
        foreach (var (host, guest) in owner.Where(o => o.Key >= kept).OrderBy(o => o.Key))
        {
            cancel.ThrowIfCancellationRequested();
            uint hole = holes.Dequeue();
            Storage.ReadAt(_header.BlockHostOffset(host), buffer);
            Storage.WriteAt(_header.BlockHostOffset(hole), buffer);
            Storage.Flush(); // the copy is complete before the entry points at it
            _map.Set(guest, hole);
            _map.WriteBack(Storage, _header.BlockMapOffset);
            Storage.Flush();
        }
        return kept;
    }

    private bool IsAllocated(long guestBlock) => VdiBlockMap.IsAllocated(_map[guestBlock]);

    private void Reload(byte[] sector)
    {
        _header = VdiHeader.Parse(sector, Storage.Length, Storage.Name);
        var mapBytes = new byte[_header.BlockMapLength];
        Storage.ReadAt(_header.BlockMapOffset, mapBytes);
        _map = VdiBlockMap.Parse(mapBytes, _header, Storage.Name);
    }
}
