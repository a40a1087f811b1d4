// Growing a VDI image whose block map has no room left before the data area (VirtualBox VDICore.h VDIHEADER1
// offset_bmap, offset_data, blocks_allocated; the block map). The data area gives up its first whole blocks to the new
// map: the data blocks there are copied to free indices further on (holes, then the end of the file), made durable,
// counted in blocks_allocated and only then repointed; the new map, its entries renumbered for a data area that
// starts that many blocks later, is written over the freed blocks; the caller's one-sector header write then switches
// offset_bmap, offset_data, blocks_in_image, blocks_allocated and disk_size together. The old map is left unused.
// A crash before that header write leaves the old size readable; once blocks have been repointed, blocks_allocated
// counts the blocks given up, which qemu-img check reports as "allocated blocks mismatch" (one corruption; it has no
// repair for VDI), and the same resize run again finishes the move and leaves the image clean.
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Vdi;

public sealed partial class VdiDriver
{
    /// <summary>Returns the new offset_bmap, offset_data and blocks_allocated; the header is left to the caller.</summary>
    private (uint MapOffset, uint DataOffset, uint Allocated) GrowMovingMap(uint blocks, Preallocation mode, CancellationToken cancel)
    {
        long mapBytes = (blocks * 4L + VdiHeader.SectorSize - 1) / VdiHeader.SectorSize * VdiHeader.SectorSize;
        uint shift = (uint)((mapBytes + VdiHeader.BlockSize - 1) / VdiHeader.BlockSize); // data blocks the map takes
        long newDataOffset = _header.DataOffset + (long)shift * VdiHeader.BlockSize;
        if (newDataOffset > uint.MaxValue)
            throw VDiskException.Unsupported(Storage.Name,
                $"{Storage.Name}: growing this VDI image to {blocks} blocks needs a {mapBytes}-byte block map, which would put the data area at byte {newDataOffset}, past the 4 GiB that offset_data can hold.");
        uint top = RelocateFirstBlocks(shift, cancel);

        // The new map, in the numbering of the data area that starts `shift` blocks later, over the freed blocks.
        var map = new byte[mapBytes];
        for (int g = 0; g < _map.Count; g++)
        {
            uint entry = _map[g];
            VdiHeader.PutU32(map, g * 4, VdiBlockMap.IsAllocated(entry) ? entry - shift : entry);
        }
        uint allocated = NewBlockEntries(map.AsSpan(_map.Count * 4, (int)(blocks - (uint)_map.Count) * 4),
            top - shift, newDataOffset, mode, cancel);
        Storage.WriteAt(_header.DataOffset, map);
        Storage.WriteZeroes(_header.DataOffset + mapBytes, newDataOffset - _header.DataOffset - mapBytes); // old guest data
        Storage.Flush(); // the new map and the new blocks' data, before the header points at them
        return (_header.DataOffset, (uint)newDataOffset, allocated);
    }

    // Moves every data block with an index below `shift` to a free index at or above it (unreferenced indices first, in
    // order, then past the end), so no guest block uses the first `shift` blocks. Returns the data area's end (an
    // index) in the current numbering: at least `shift`, so the new numbering starts at zero. When the copies reach
    // past blocks_in_image (an image with every block allocated), blocks_in_image grows with blocks_allocated, its extra
    // entries unallocated in the old map's last sector; without room there the grow is refused before anything moves.
    private uint RelocateFirstBlocks(uint shift, CancellationToken cancel)
    {
        var used = new HashSet<uint>();
        var moving = new List<(long Guest, uint From, uint To)>();
        for (long g = 0; g < _map.Count; g++)
            if (IsAllocated(g)) used.Add(_map[g]);
        uint top = Math.Max(_header.BlocksAllocated, shift), candidate = shift;
        for (long g = 0; g < _map.Count; g++)
        {
            if (!IsAllocated(g) || _map[g] >= shift) continue;
            while (used.Contains(candidate)) candidate++;
            moving.Add((g, _map[g], candidate));
            top = Math.Max(top, ++candidate);
        }
        if (moving.Count == 0) return top;
        uint inImage = Math.Max(_header.BlocksInImage, top);
        if (_header.BlockMapOffset + inImage * 4L > _header.DataOffset)
            throw VDiskException.Unsupported(Storage.Name,
                $"{Storage.Name}: this VDI image has all {_header.BlocksInImage} blocks allocated and its block map has no room for the {inImage - _header.BlocksInImage} more entries that moving its first data blocks needs, so it cannot be grown past {(_header.DataOffset - _header.BlockMapOffset) / 4} blocks safely; convert it to a new VDI image of the new size (Convert-VDisk) instead.");

        var buffer = new byte[VdiHeader.BlockSize];
        foreach (var (_, from, to) in moving)
        {
            cancel.ThrowIfCancellationRequested();
            Storage.ReadAt(_header.BlockHostOffset(from), buffer);
            Storage.WriteAt(_header.BlockHostOffset(to), buffer);
        }
        Storage.Flush(); // the copies are complete before anything counts or points at them
        if (top > _header.BlocksAllocated)
        {
            if (inImage > _header.BlocksInImage)
            {
                var extra = new byte[(inImage - _header.BlocksInImage) * 4];
                extra.AsSpan().Fill(0xff); // VDI_UNALLOCATED
                Storage.WriteAt(_header.BlockMapOffset + _header.BlockMapLength, extra);
                Storage.Flush(); // the extra entries are unallocated before the header counts them
            }
            var sector = new byte[VdiHeader.SectorSize];
            Storage.ReadAt(0, sector);
            VdiHeader.PutU32(sector, VdiHeader.BlocksInImageOffset, inImage);
            VdiHeader.PutU32(sector, VdiHeader.BlocksAllocatedOffset, top);
            Storage.WriteAt(0, sector);
            _header.BlocksAllocated = top;
            Storage.Flush(); // blocks_allocated covers the copies before an entry points at one
        }
        foreach (var (guest, _, to) in moving) _map.Set(guest, to);
        _map.WriteBack(Storage, _header.BlockMapOffset);
        Storage.Flush(); // no entry points into the first blocks before the new map is written over them
        return top;
    }
}
