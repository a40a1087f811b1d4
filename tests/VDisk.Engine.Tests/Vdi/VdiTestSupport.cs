// VDI test helpers: deterministic data patterns, images in memory, the consistency rule qemu-img check applies.
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vdi;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Tests.Vdi;

internal static class VdiTestSupport
{
    public const int MiB = 1 << 20;

    /// <summary>Bytes that differ with position and seed, never all zero over a sector.</summary>
    public static byte[] Pattern(long offset, int length, byte seed)
    {
        var data = new byte[length];
        for (int i = 0; i < length; i++)
        {
            long p = offset + i;
            data[i] = (byte)((p * 131 + (p >> 9) * 7 + seed * 29 + 1) | 1);
        }
        return data;
    }

    /// <summary>A new empty VDI image in memory, created as CreateImage would write it.</summary>
    public static MemoryStorage NewImage(long size, bool isStatic, string name = "test.vdi")
    {
        var storage = new MemoryStorage(name);
        var options = new CreateOptions { Format = ImageFormat.Vdi, Size = size, Subformat = isStatic ? ImageSubformat.Static : ImageSubformat.Dynamic };
        VdiCreator.WriteEmpty(storage, options, size);
        return storage;
    }

    /// <summary>Opens <paramref name="storage"/> as a VDI disk with no backing image.</summary>
    public static VirtualDisk Open(IStorage storage, bool writable)
        => new(storage.Name, VdiDriver.Open(storage, writable), null, writable);

    /// <summary>
    /// What `qemu-img check` verifies for VDI, on the raw bytes of an image: every allocated entry is unique and
    /// below blocks_allocated (also checked on open), and blocks_allocated equals the count of allocated entries.
    /// </summary>
    public static void AssertConsistent(byte[] image, string name = "test.vdi")
    {
        var header = VdiHeader.Parse(image.AsSpan(0, VdiHeader.SectorSize), image.Length, name);
        var map = VdiBlockMap.Parse(image.AsSpan((int)header.BlockMapOffset, (int)header.BlockMapLength), header, name);
        int allocated = 0;
        for (int i = 0; i < map.Count; i++) if (VdiBlockMap.IsAllocated(map[i])) allocated++;
        Assert.Equal(header.BlocksAllocated, (uint)allocated);
    }
}
