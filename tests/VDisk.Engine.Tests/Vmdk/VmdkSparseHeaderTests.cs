// Byte fixtures of the hosted sparse extent header (Virtual Disk Format 1.1, SparseExtentHeader), as
// qemu-img writes it for an 8 MiB monolithicSparse disk, and the layout rules behind each field.
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vmdk;

namespace VDisk.Engine.Tests.Vmdk;

public class VmdkSparseHeaderTests
{
    private static readonly byte[] MonolithicSparse8MiB =
    {
        0x4b, 0x44, 0x4d, 0x56,                         // magicNumber "KDMV"
        0x01, 0x00, 0x00, 0x00,                         // version 1
        0x03, 0x00, 0x00, 0x00,                         // flags: newline detection | redundant grain directory
        0x00, 0x40, 0x00, 0x00, 0, 0, 0, 0,             // capacity 16384 sectors
        0x80, 0x00, 0x00, 0x00, 0, 0, 0, 0,             // grainSize 128 sectors (64 KiB)
        0x01, 0x00, 0x00, 0x00, 0, 0, 0, 0,             // descriptorOffset sector 1
        0x14, 0x00, 0x00, 0x00, 0, 0, 0, 0,             // descriptorSize 20 sectors
        0x00, 0x02, 0x00, 0x00,                         // numGTEsPerGT 512
        0x15, 0x00, 0x00, 0x00, 0, 0, 0, 0,             // rgdOffset 21 = after the descriptor
        0x1a, 0x00, 0x00, 0x00, 0, 0, 0, 0,             // gdOffset 26 = rgd + 1 directory sector + 4 table sectors
        0x80, 0x00, 0x00, 0x00, 0, 0, 0, 0,             // overHead 128 = gd + 5, rounded up to a grain
        0x00,                                           // uncleanShutdown
        0x0a, 0x20, 0x0d, 0x0a,                         // newline check characters "\n \r\n"
        0x00, 0x00,                                     // compressAlgorithm: none
    };

    [Fact]
    public void WritesQemuImgsHeader()
    {
        var sector = new byte[512];
        VmdkCreator.SparseHeader(16384, 128, compressed: false).WriteTo(sector);
        Assert.Equal(MonolithicSparse8MiB, sector[..MonolithicSparse8MiB.Length]);
        Assert.All(sector[MonolithicSparse8MiB.Length..], b => Assert.Equal(0, b));
    }

    [Fact]
    public void ParsesAndValidatesIt()
    {
        var sector = new byte[512];
        MonolithicSparse8MiB.CopyTo(sector, 0);
        var h = VmdkSparseHeader.Parse(sector, "fixture.vmdk");
        h.Validate("fixture.vmdk", 128 * 512);
        Assert.Equal((1u, 16384L, 128L, 26L, 21L, 128L), (h.Version, h.Capacity, h.GrainSize, h.GdOffset, h.RgdOffset, h.Overhead));
        Assert.True(h.HasRedundantGd);
        Assert.False(h.IsCompressed);
        Assert.Equal(1, h.GdEntries);
    }

    [Fact]
    public void StreamHeaderPointsToTheFooter()
    {
        var h = VmdkCreator.SparseHeader(16384, 128, compressed: true);
        Assert.Equal((3u, 0x30001u, true, 128L), (h.Version, h.Flags, h.GdIsAtEnd, h.Overhead));
        var sector = new byte[512];
        h.WriteTo(sector);
        Assert.Equal(Enumerable.Repeat((byte)0xff, 8), sector[56..64]); // gdOffset GD_AT_END
        Assert.Equal(new byte[] { 1, 0 }, sector[77..79]);              // compressAlgorithm deflate
    }

    [Fact]
    public void TextModeDamageIsDetected()
    {
        var sector = new byte[512];
        MonolithicSparse8MiB.CopyTo(sector, 0);
        sector[75] = 0x0a; // "\r\n" became "\n\n"
        var e = Assert.Throws<VDiskException>(() => VmdkSparseHeader.Parse(sector, "f.vmdk").Validate("f.vmdk", 128 * 512));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains("text mode", e.Message);
    }

    [Theory]
    [InlineData(true, 4096, null)]
    [InlineData(true, 8192, VDiskErrorKind.Unsupported)]
    [InlineData(true, 0x200000, VDiskErrorKind.Unsupported)] // 1 GiB: one read allocated 1 GiB (FuzzRegressions/vmdk-sparse)
    [InlineData(false, 0x200000, null)]                       // uncompressed grains are never buffered whole
    public void CompressedGrainsAreAtMost2MiB(bool compressed, long grainSectors, VDiskErrorKind? expected)
    {
        var sector = new byte[512];
        var header = VmdkCreator.SparseHeader(grainSectors * 512, grainSectors, compressed);
        header.WriteTo(sector);
        var parsed = VmdkSparseHeader.Parse(sector, "g.vmdk");
        var e = Record.Exception(() => parsed.Validate("g.vmdk", header.Overhead * 512 + 512));
        if (expected is null)
        {
            Assert.Null(e);
            return;
        }
        Assert.Equal(expected, Assert.IsType<VDiskException>(e).Kind);
        Assert.Contains("2 MiB", e.Message);
    }
}
