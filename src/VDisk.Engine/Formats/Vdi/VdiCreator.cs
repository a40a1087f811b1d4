// Creating a VDI image the way QEMU's block/vdi.c vdi_co_do_create does: header sector, block map at
// 0x200 padded to a whole sector, data right after it; dynamic images hold no blocks, static images map
// guest block i to data block i and are sized (sparsely) to hold every block.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Vdi;

internal static class VdiCreator
{
    /// <summary>Where QEMU puts the block map: the sector after the header.</summary>
    private const uint BlockMapOffset = 0x200;

    /// <summary>Checks options the way qemu-img does, before any file is touched.</summary>
    public static void Validate(CreateOptions o, string? backingName, string path)
    {
        if (backingName != null)
            throw VDiskException.Invalid(path, "VDI images cannot have a backing file; use qcow2 for an overlay.");
        if (o.Subformat is not (ImageSubformat.Default or ImageSubformat.Dynamic or ImageSubformat.Static))
            throw VDiskException.Invalid(path, $"Subformat '{o.Subformat}' is not a VDI variant (use Dynamic or Static).");
        if (o.Preallocation is not (Preallocation.Off or Preallocation.Metadata))
            throw VDiskException.Invalid(path, $"Preallocation '{o.Preallocation}' is not supported for VDI images (use Off, or Metadata for a static image).");
        if (o.Subformat == ImageSubformat.Dynamic && o.Preallocation == Preallocation.Metadata)
            throw VDiskException.Invalid(path, "A dynamic VDI image cannot be preallocated; Metadata preallocation makes a static image.");
        long size = o.Size ?? 0;
        if (size > VdiHeader.MaxDiskSize)
            throw VDiskException.Invalid(path, $"A {size}-byte disk is too large for VDI (at most {VdiHeader.MaxDiskSize} bytes).");
    }

    /// <summary>True when the options ask for a static image (qemu-img's static=on, or preallocation=metadata).</summary>
    public static bool IsStatic(CreateOptions o) => o.Subformat == ImageSubformat.Static || o.Preallocation == Preallocation.Metadata;

    /// <summary>Writes an empty image of <paramref name="size"/> bytes (a whole number of sectors) to empty storage.</summary>
    public static void WriteEmpty(IStorage storage, CreateOptions o, long size)
    {
        bool isStatic = IsStatic(o);
        uint blocks = (uint)((size + VdiHeader.BlockSize - 1) / VdiHeader.BlockSize);
        long mapBytes = (blocks * 4L + VdiHeader.SectorSize - 1) / VdiHeader.SectorSize * VdiHeader.SectorSize;
        var header = new VdiHeader
        {
            ImageType = isStatic ? VdiImageType.Static : VdiImageType.Dynamic,
            BlockMapOffset = BlockMapOffset,
            DataOffset = (uint)(BlockMapOffset + mapBytes),
            DiskSize = size,
            BlocksInImage = blocks,
            BlocksAllocated = isStatic ? blocks : 0,
            ImageUuid = Guid.NewGuid(),
            LastSnapUuid = Guid.NewGuid(),
        };
        header.Validate(header.DataOffset, storage.Name);

        var sector = new byte[VdiHeader.SectorSize];
        header.WriteTo(sector);
        storage.WriteAt(0, sector);
        var map = VdiBlockMap.Create(blocks, i => isStatic ? i : VdiBlockMap.Unallocated);
        var mapSectors = new byte[mapBytes];
        map.WriteTo(mapSectors);
        storage.WriteAt(BlockMapOffset, mapSectors);
        storage.SetLength(isStatic ? header.BlockHostOffset(blocks) : header.DataOffset);
        storage.Flush();
    }
}
