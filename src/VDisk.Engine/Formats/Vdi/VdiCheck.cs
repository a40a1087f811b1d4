// Read-only check of a VDI block map (VirtualBox VDICore.h "Block 'pointer'"; what qemu-img check does for vdi, QEMU's
// vdi_co_check, plus the file length): every allocated entry names a data block below blocks_in_image that lies inside
// the file, no two guest blocks share a data block, and the allocated entries number blocks_allocated.
using System.Buffers.Binary;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Vdi;

/// <summary>Checks the block map of a VDI image.</summary>
internal static class VdiCheck
{
    private const int MaxReported = 50;

    /// <summary>Counts the corruptions of the VDI image in <paramref name="storage"/>, with the first ones in words.</summary>
    public static (long Corruptions, IReadOnlyList<string> Problems) Run(IStorage storage)
    {
        var sector = new byte[VdiHeader.SectorSize];
        storage.ReadAt(0, sector);
        var header = VdiHeader.Parse(sector, storage.Length, storage.Name);
        var map = new byte[header.BlockMapLength];
        storage.ReadAt(header.BlockMapOffset, map);
        long corruptions = 0, allocated = 0;
        var problems = new List<string>();
        void Report(string message)
        {
            corruptions++;
            if (problems.Count < MaxReported) problems.Add(message);
        }
        var owner = new uint[header.BlocksInImage];
        Array.Fill(owner, VdiBlockMap.Unallocated);
        for (uint block = 0; block < header.BlocksInImage; block++)
        {
            uint entry = BinaryPrimitives.ReadUInt32LittleEndian(map.AsSpan((int)(block * 4)));
            if (!VdiBlockMap.IsAllocated(entry)) continue;
            if (entry >= header.BlocksInImage)
            {
                Report($"block map entry {block} is {entry}, beyond blocks_in_image ({header.BlocksInImage})");
                continue;
            }
            allocated++;
            if (owner[entry] != VdiBlockMap.Unallocated) Report($"block map entries {owner[entry]} and {block} both point at data block {entry}");
            else owner[entry] = block;
            if (header.BlockHostOffset(entry) + VdiHeader.BlockSize > storage.Length)
                Report($"block map entry {block} points at data block {entry}, past the end of the file");
        }
        if (allocated != header.BlocksAllocated)
            Report($"the block map allocates {allocated} blocks but blocks_allocated says {header.BlocksAllocated}");
        return (corruptions, problems);
    }
}
