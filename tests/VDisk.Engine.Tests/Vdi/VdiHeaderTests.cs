// Header byte fixtures (the exact sector qemu-img 7.2 writes), layouts other writers use (VirtualBox's
// 1 MiB-aligned block map, older pre-header texts, odd disk sizes, discarded blocks), and bad input:
// every refusal has the right kind and names the file and the field.
using System.Buffers.Binary;
using System.Text;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vdi;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;
using static VDisk.Engine.Tests.Vdi.VdiTestSupport;

namespace VDisk.Engine.Tests.Vdi;

public sealed class VdiHeaderTests
{
    private const string Name = "/images/bad.vdi";

    // The first sector of `qemu-img create -f vdi d.vdi 10M` (qemu-img 7.2.22), field by field.
    private static byte[] QemuTenMiBHeader()
    {
        var s = new byte[512];
        Encoding.ASCII.GetBytes("<<< QEMU VM Virtual Disk Image >>>\n").CopyTo(s, 0x00); // pre-header text
        Put(s, 0x40, 0xbeda107f);  // signature
        Put(s, 0x44, 0x00010001);  // version 1.1
        Put(s, 0x48, 0x180);       // header_size: sizeof(VDIHEADER1), no LCHS geometry
        Put(s, 0x4c, 1);           // image_type: dynamic
        Put(s, 0x154, 0x200);      // offset_bmap: the sector after the header
        Put(s, 0x158, 0x400);      // offset_data: after the 40-byte map padded to a sector
        Put(s, 0x168, 512);        // legacy geometry sector_size (cylinders/heads/sectors 0)
        BinaryPrimitives.WriteUInt64LittleEndian(s.AsSpan(0x170), 10 << 20); // disk_size
        Put(s, 0x178, 1 << 20);    // block_size
        Put(s, 0x180, 10);         // blocks_in_image
        Put(s, 0x184, 0);          // blocks_allocated
        Convert.FromHexString("06077b091c060e4188e8fd1cc3986293").CopyTo(s, 0x188); // uuid_image (IPRT byte order)
        Convert.FromHexString("3031a7e648bc0f4a85bf99da9403b0e6").CopyTo(s, 0x198); // uuid_last_snap
        return s;
    }

    [Fact]
    public void ParsesTheHeaderQemuWrites()
    {
        var h = VdiHeader.Parse(QemuTenMiBHeader(), 0x400, Name);
        Assert.Equal("<<< QEMU VM Virtual Disk Image >>>\n", h.Text);
        Assert.Equal(VdiImageType.Dynamic, h.ImageType);
        Assert.Equal((0x200u, 0x400u), (h.BlockMapOffset, h.DataOffset));
        Assert.Equal(10L << 20, h.DiskSize);
        Assert.Equal((10u, 0u), (h.BlocksInImage, h.BlocksAllocated));
        Assert.Equal(Guid.Parse("097b0706-061c-410e-88e8-fd1cc3986293"), h.ImageUuid); // a version 4 UUID, read right
        Assert.Equal(Guid.Empty, h.ParentUuid);
        Assert.Null(h.LchsGeometry);
    }

    [Fact]
    public void WritesTheHeaderQemuWrites()
    {
        var fixture = QemuTenMiBHeader();
        var parsed = VdiHeader.Parse(fixture, 0x400, Name);
        var h = new VdiHeader
        {
            BlockMapOffset = 0x200, DataOffset = 0x400, DiskSize = 10 << 20, BlocksInImage = 10,
            ImageUuid = parsed.ImageUuid, LastSnapUuid = parsed.LastSnapUuid,
        };
        var written = new byte[512];
        h.WriteTo(written);
        Assert.Equal(Convert.ToHexString(fixture), Convert.ToHexString(written));
    }

    [Fact]
    public void CreatorLaysOutImagesLikeQemu()
    {
        var image = NewImage(10 << 20, isStatic: false).ToArray();
        Assert.Equal(0x400, image.Length);
        var expected = QemuTenMiBHeader();
        // Everything but the freshly generated UUIDs matches qemu-img's bytes.
        Assert.Equal(Convert.ToHexString(expected, 0, 0x188), Convert.ToHexString(image, 0, 0x188));
        Assert.Equal(Convert.ToHexString(expected, 0x1a8, 0x58), Convert.ToHexString(image, 0x1a8, 0x58));
        Assert.All(Enumerable.Range(0, 10), i => Assert.Equal(0xffffffffu, BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(0x200 + i * 4))));

        var fixedImage = NewImage(3000320, isStatic: true).ToArray();
        Assert.Equal(0x400 + 3 * MiB, fixedImage.Length);
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(fixedImage.AsSpan(0x4c)));
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(fixedImage.AsSpan(0x184)));
        Assert.Equal(new uint[] { 0, 1, 2 }, Enumerable.Range(0, 3).Select(i => BinaryPrimitives.ReadUInt32LittleEndian(fixedImage.AsSpan(0x200 + i * 4))));
    }

    [Theory]
    [InlineData("<<< innotek VirtualBox Disk Image >>>\n")]
    [InlineData("<<< Sun xVM VirtualBox Disk Image >>>\n")]
    [InlineData("<<< Sun VirtualBox Disk Image >>>\n")]
    [InlineData("<<< Oracle VM VirtualBox Disk Image >>>\n")]
    public void AcceptsEveryPreHeaderText(string text)
    {
        var image = NewImage(2 * MiB, isStatic: false).ToArray();
        Array.Clear(image, 0, 0x40);
        Encoding.ASCII.GetBytes(text).CopyTo(image, 0);
        using var disk = Open(new MemoryStorage(Name, image), writable: false);
        Assert.Equal(2L * MiB, disk.Length);
    }

    [Fact]
    public void RoundsOddDiskSizesUpToASector()
    {
        var image = NewImage(2 * MiB, isStatic: false).ToArray();
        BinaryPrimitives.WriteUInt64LittleEndian(image.AsSpan(0x170), 1_000_001); // VBoxManage convertfromraw can do this
        using var disk = Open(new MemoryStorage(Name, image), writable: false);
        Assert.Equal(1_000_448, disk.Length);
    }

    // A VirtualBox-style image: VDIHEADER1PLUS with LCHS geometry, block map at 1 MiB and data at 2 MiB
    // (VDI_DATA_ALIGN), a comment, data blocks stored out of guest order, and a discarded (zero) block.
    [Fact]
    public void ReadsVirtualBoxLayoutAndPreservesTheHeaderOnWrite()
    {
        var image = new byte[2 * MiB + 2 * MiB];
        var s = image.AsSpan();
        Encoding.ASCII.GetBytes("<<< Oracle VirtualBox Disk Image >>>\n").CopyTo(s);
        Put(s, 0x40, 0xbeda107f);
        Put(s, 0x44, 0x00010001);
        Put(s, 0x48, 0x190);         // header_size: VDIHEADER1PLUS
        Put(s, 0x4c, 1);
        Encoding.UTF8.GetBytes("made by hand").CopyTo(s[0x54..]); // comment
        Put(s, 0x154, 1 << 20);      // offset_bmap
        Put(s, 0x158, 2 << 20);      // offset_data
        Put(s, 0x168, 512);
        BinaryPrimitives.WriteUInt64LittleEndian(s[0x170..], 4 << 20);
        Put(s, 0x178, 1 << 20);
        Put(s, 0x180, 4);            // blocks_in_image
        Put(s, 0x184, 2);            // blocks_allocated
        Guid.NewGuid().TryWriteBytes(s[0x188..]);
        Guid.NewGuid().TryWriteBytes(s[0x198..]);
        Put(s, 0x1c8, 520); Put(s, 0x1cc, 16); Put(s, 0x1d0, 63); Put(s, 0x1d4, 512); // LCHS geometry
        uint[] map = { 1, 0xffffffff, 0xfffffffe, 0 };
        for (int i = 0; i < map.Length; i++) Put(s, (1 << 20) + i * 4, map[i]);
        Pattern(0, MiB, 7).CopyTo(s[(2 << 20)..]);         // data block 0 holds guest block 3
        Pattern(0, MiB, 8).CopyTo(s[(3 << 20)..]);         // data block 1 holds guest block 0

        var storage = new MemoryStorage(Name, image);
        using (var disk = Open(storage, writable: true))
        {
            var all = Images.ReadAll(disk);
            Assert.Equal(Pattern(0, MiB, 8), all[..MiB]);
            Assert.Equal(new byte[2 * MiB], all[MiB..(3 * MiB)]);
            Assert.Equal(Pattern(0, MiB, 7), all[(3 * MiB)..]);
            Assert.Equal(ExtentKind.Unallocated, disk.Driver.Map(MiB, MiB).Kind);
            Assert.Equal(ExtentKind.Zero, disk.Driver.Map(2L * MiB, MiB).Kind);
            disk.Write(MiB + 5, Pattern(0, 5, 9));              // allocates data block 2
        }
        var after = storage.ToArray();
        Assert.Equal(image.AsSpan(0, 0x184).ToArray(), after.AsSpan(0, 0x184).ToArray());   // header untouched ...
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32LittleEndian(after.AsSpan(0x184)));      // ... but blocks_allocated
        Assert.Equal(image.AsSpan(0x188, 0x78).ToArray(), after.AsSpan(0x188, 0x78).ToArray()); // UUIDs and LCHS kept
        Assert.Equal(2u, BinaryPrimitives.ReadUInt32LittleEndian(after.AsSpan((1 << 20) + 4)));
        AssertConsistent(after, Name);
    }

    public static TheoryData<string, Action<byte[]>, VDiskErrorKind, string> BadImages => new()
    {
        { "wrong signature", b => Put(b, 0x40, 0xdeadbeef), VDiskErrorKind.NotAnImage, "signature" },
        { "unsupported version", b => Put(b, 0x44, 0x00010002), VDiskErrorKind.Unsupported, "version is 1.2" },
        { "header_size too small", b => Put(b, 0x48, 0x100), VDiskErrorKind.Corrupt, "header_size is 256" },
        { "unknown image type", b => Put(b, 0x4c, 9), VDiskErrorKind.Corrupt, "image_type is 9" },
        { "differencing image type", b => Put(b, 0x4c, 4), VDiskErrorKind.Unsupported, "image_type is 4" },
        { "unknown image flags", b => Put(b, 0x50, 2), VDiskErrorKind.Unsupported, "image_flags" },
        { "unaligned block map", b => Put(b, 0x154, 0x204), VDiskErrorKind.Unsupported, "offset_bmap is 0x204" },
        { "block map over the header", b => Put(b, 0x154, 0), VDiskErrorKind.Corrupt, "offset_bmap is 0x0" },
        { "block map past end of file", b => Put(b, 0x154, 0x400000), VDiskErrorKind.Corrupt, "offset_bmap is 0x400000" },
        { "unaligned data area", b => Put(b, 0x158, 0x401), VDiskErrorKind.Unsupported, "offset_data is 0x401" },
        { "data area over the block map", b => Put(b, 0x158, 0x200), VDiskErrorKind.Corrupt, "offset_data is 0x200" },
        { "sector size", b => Put(b, 0x168, 4096), VDiskErrorKind.Unsupported, "sector_size is 4096" },
        { "disk_size beyond the limit", b => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(0x170), 1UL << 60), VDiskErrorKind.Unsupported, "disk_size" },
        { "block size", b => Put(b, 0x178, 4096), VDiskErrorKind.Unsupported, "block_size is 4096" },
        { "block extra", b => Put(b, 0x17c, 512), VDiskErrorKind.Unsupported, "block_extra is 512" },
        { "too few blocks for the disk", b => Put(b, 0x180, 5), VDiskErrorKind.Corrupt, "blocks_in_image is 5" },
        { "too many blocks", b => Put(b, 0x180, 0x20000000), VDiskErrorKind.Unsupported, "blocks_in_image is 536870912" },
        { "more allocated than exist", b => Put(b, 0x184, 11), VDiskErrorKind.Corrupt, "blocks_allocated is 11" },
        { "link UUID", b => b[0x1a8] = 1, VDiskErrorKind.Unsupported, "uuid_link" },
        { "parent UUID", b => b[0x1b8] = 1, VDiskErrorKind.Unsupported, "uuid_parent" },
        { "LCHS sector size", b => { Put(b, 0x48, 0x190); Put(b, 0x1d4, 4096); }, VDiskErrorKind.Unsupported, "lchs_geometry.sector_size is 4096" },
        { "entry beyond blocks_allocated", b => Put(b, 0x200 + 7 * 4, 5), VDiskErrorKind.Corrupt, "block map entry 7 is 5, beyond blocks_allocated (2)" },
        { "two entries share a block", b => Put(b, 0x200 + 9 * 4, 1), VDiskErrorKind.Corrupt, "entries 0 and 9 both point at data block 1" },
    };

    [Theory]
    [MemberData(nameof(BadImages))]
    public void RefusesBadHeadersNamingFileAndField(string why, Action<byte[]> damage, VDiskErrorKind kind, string field)
    {
        var image = TwoBlockImage();
        damage(image);
        var e = Assert.Throws<VDiskException>(() => VdiDriver.Open(new MemoryStorage(Name, image), writable: false));
        Assert.True(kind == e.Kind, $"{why}: expected {kind}, got {e.Kind}: {e.Message}");
        Assert.Equal(Name, e.Path);
        Assert.StartsWith(Name, e.Message);
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void RefusesATruncatedHeader()
    {
        var image = TwoBlockImage()[..300];
        var e = Assert.Throws<VDiskException>(() => VdiDriver.Open(new MemoryStorage(Name, image), writable: false));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains(Name, e.Message);
        Assert.Contains("header is truncated: the file is 300 bytes", e.Message);
    }

    [Fact]
    public void RefusesABlockMapCutShortByTheEndOfFile()
    {
        var image = TwoBlockImage()[..0x210]; // the 40-byte map at 0x200 needs 0x228 bytes
        var e = Assert.Throws<VDiskException>(() => VdiDriver.Open(new MemoryStorage(Name, image), writable: false));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains("offset_bmap is 0x200", e.Message);
        Assert.Contains("past the end of the file (528 bytes)", e.Message);
    }

    // A 10 MiB dynamic image with guest blocks 3 and 0 allocated (data blocks 0 and 1).
    private static byte[] TwoBlockImage()
    {
        var storage = NewImage(10 << 20, isStatic: false, Name);
        using (var disk = Open(storage, writable: true))
        {
            disk.Write(3L * MiB, Pattern(0, 100, 1));
            disk.Write(0, Pattern(0, 100, 2));
        }
        return storage.ToArray();
    }

    private static void Put(Span<byte> s, int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(s[offset..], value);
    private static void Put(byte[] s, int offset, uint value) => Put(s.AsSpan(), offset, value);
}
