// Write -> reopen -> read round trips of dynamic and static VDI images on real files, created through
// CreateImage and opened through ImageChain exactly as the cmdlets do.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vdi;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;
using static VDisk.Engine.Tests.Vdi.VdiTestSupport;

namespace VDisk.Engine.Tests.Vdi;

public sealed class VdiRoundTripTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    // 5 MiB + 3000 bytes: qemu-img rounds to 5 MiB + 3072, which leaves the sixth block partly outside the disk.
    private const long RequestedSize = 5L * MiB + 3000;
    private const long RoundedSize = 5L * MiB + 3072;

    // (offset, length): first byte, last byte, across block boundaries, partial blocks, and a multi-block run.
    private static readonly (long Offset, int Length)[] Writes =
    {
        (0, 1),
        (RoundedSize - 1, 1),
        (MiB - 100, 200),
        (2L * MiB + MiB / 2, 4096),
        (3L * MiB - 7, 2 * MiB + 14),
        (5L * MiB, 3072),
    };

    [Theory]
    [InlineData(ImageSubformat.Default, "dynamic")]
    [InlineData(ImageSubformat.Dynamic, "dynamic")]
    [InlineData(ImageSubformat.Static, "static")]
    public void WritesSurviveReopen(ImageSubformat subformat, string expectedSubformat)
    {
        string path = _temp.File("disk.vdi");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vdi, Subformat = subformat, Size = RequestedSize });
        var model = new byte[RoundedSize];

        using (var disk = ImageChain.Open(path, new OpenOptions { Writable = true }))
        {
            Assert.Equal(ImageFormat.Vdi, disk.Format);
            Assert.Equal(RoundedSize, disk.Length);
            Assert.Equal(new byte[RoundedSize], Images.ReadAll(disk));
            byte seed = 1;
            foreach (var (offset, length) in Writes)
            {
                var data = Pattern(offset, length, seed++);
                disk.Write(offset, data);
                data.CopyTo(model, offset);
            }
            Assert.Equal(model, Images.ReadAll(disk));
        }

        using (var disk = ImageChain.Open(path))
        {
            Assert.Equal(model, Images.ReadAll(disk));
            var details = disk.Driver.Details;
            Assert.Equal(expectedSubformat, details.Subformat);
            Assert.Equal(MiB, details.ClusterSize);
            Assert.Equal("1.1", details.Compat);
        }
        AssertConsistent(File.ReadAllBytes(path));
    }

    [Fact]
    public void DynamicImageGrowsByWholeBlocksInWriteOrder()
    {
        string path = _temp.File("grow.vdi");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vdi, Size = 8L * MiB });
        long empty = new FileInfo(path).Length;
        Assert.Equal(0x400, empty); // header sector + one block-map sector, as qemu-img writes it

        using (var disk = ImageChain.Open(path, new OpenOptions { Writable = true }))
        {
            disk.Write(6L * MiB + 10, Pattern(0, 10, 1)); // first allocation: data block 0
            disk.Write(1L * MiB, Pattern(0, 512, 2));     // second: data block 1
            disk.Write(6L * MiB + 20, Pattern(0, 10, 3)); // in place, no allocation
        }
        Assert.Equal(empty + 2L * MiB, new FileInfo(path).Length);

        using var reopened = ImageChain.Open(path);
        var m6 = reopened.Driver.Map(6L * MiB, MiB);
        var m1 = reopened.Driver.Map(1L * MiB, MiB);
        Assert.Equal((ExtentKind.Data, empty), (m6.Kind, m6.HostOffset));
        Assert.Equal((ExtentKind.Data, empty + MiB), (m1.Kind, m1.HostOffset));
        Assert.Equal(ExtentKind.Unallocated, reopened.Driver.Map(0, MiB).Kind);
        Assert.Equal(new BlockStatus(ExtentKind.Unallocated, 4L * MiB, 0), reopened.GetBlockStatus(MiB * 2L, 8L * MiB));
    }

    [Fact]
    public void StaticImageIsFullySizedAndNeverGrows()
    {
        string path = _temp.File("static.vdi");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vdi, Subformat = ImageSubformat.Static, Size = 3000000 });
        long length = new FileInfo(path).Length;
        Assert.Equal(0x400 + 3L * MiB, length);
        using (var disk = ImageChain.Open(path, new OpenOptions { Writable = true }))
        {
            Assert.Equal(new BlockStatus(ExtentKind.Data, disk.Length, 0), disk.GetBlockStatus(0, disk.Length));
            disk.Write(2L * MiB, Pattern(0, 4096, 9));
        }
        Assert.Equal(length, new FileInfo(path).Length);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ZeroingReadsZeroAndKeepsTheImageConsistent(bool unmap)
    {
        string path = _temp.File("zero.vdi");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vdi, Size = 6L * MiB });
        var model = new byte[6L * MiB];
        using (var disk = ImageChain.Open(path, new OpenOptions { Writable = true }))
        {
            var data = Pattern(0, 3 * MiB, 4);
            disk.Write(MiB, data);
            data.CopyTo(model, MiB);
            disk.WriteZeroes(MiB + 100, 2L * MiB, unmap);      // partial head, one whole block, partial tail
            Array.Clear(model, MiB + 100, 2 * MiB);
            disk.WriteZeroes(4L * MiB, 2L * MiB, unmap);       // never-written blocks: marked discarded
            Assert.Equal(model, Images.ReadAll(disk));
        }
        using (var disk = ImageChain.Open(path))
        {
            Assert.Equal(model, Images.ReadAll(disk));
            Assert.Equal(ExtentKind.Data, disk.Driver.Map(2L * MiB, MiB).Kind); // zeroed in place, still allocated
            Assert.Equal(new BlockStatus(ExtentKind.Zero, 2L * MiB, 0), disk.GetBlockStatus(4L * MiB, 2L * MiB));
            Assert.Equal(ExtentKind.Unallocated, disk.Driver.Map(0, MiB).Kind);
        }
        AssertConsistent(File.ReadAllBytes(path));
    }

    [Fact]
    public void EveryImageGetsItsOwnUuid()
    {
        CreateImage.Run(_temp.File("a.vdi"), new CreateOptions { Format = ImageFormat.Vdi, Size = MiB });
        CreateImage.Run(_temp.File("b.vdi"), new CreateOptions { Format = ImageFormat.Vdi, Size = MiB });
        using var a = ImageChain.Open(_temp.File("a.vdi"));
        using var b = ImageChain.Open(_temp.File("b.vdi"));
        Guid uuidA = ((VdiDriver)a.Driver).ImageUuid, uuidB = ((VdiDriver)b.Driver).ImageUuid;
        Assert.NotEqual(Guid.Empty, uuidA);
        Assert.NotEqual(uuidA, uuidB);
    }

    [Fact]
    public void ReadOnlyOpenRefusesWrites()
    {
        string path = _temp.File("ro.vdi");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vdi, Size = MiB });
        using var disk = ImageChain.Open(path);
        var e = Assert.Throws<VDiskException>(() => disk.Write(0, new byte[1]));
        Assert.Equal(VDiskErrorKind.ReadOnly, e.Kind);
    }

    [Theory]
    [InlineData(ImageSubformat.MonolithicSparse, Preallocation.Off)]
    [InlineData(ImageSubformat.Default, Preallocation.Full)]
    [InlineData(ImageSubformat.Default, Preallocation.Falloc)]
    [InlineData(ImageSubformat.Dynamic, Preallocation.Metadata)]
    public void CreateRefusesOptionsVdiDoesNotHave(ImageSubformat subformat, Preallocation preallocation)
    {
        string path = _temp.File("bad.vdi");
        var e = Assert.Throws<VDiskException>(() => CreateImage.Run(path,
            new CreateOptions { Format = ImageFormat.Vdi, Size = MiB, Subformat = subformat, Preallocation = preallocation }));
        Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void MetadataPreallocationMakesAStaticImage()
    {
        string path = _temp.File("meta.vdi");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vdi, Size = 2L * MiB, Preallocation = Preallocation.Metadata });
        using var disk = ImageChain.Open(path);
        Assert.Equal("static", disk.Driver.Details.Subformat);
    }

    [Fact]
    public void CreateRefusesABackingFile()
    {
        string basePath = _temp.File("base.vdi");
        CreateImage.Run(basePath, new CreateOptions { Format = ImageFormat.Vdi, Size = MiB });
        var e = Assert.Throws<VDiskException>(() => CreateImage.Run(_temp.File("top.vdi"),
            new CreateOptions { Format = ImageFormat.Vdi, BackingPath = basePath }));
        Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("backing", e.Message);
    }

    [Fact]
    public void ZeroSizedImageOpens()
    {
        string path = _temp.File("empty.vdi");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vdi, Size = 0 });
        Assert.Equal(0x200, new FileInfo(path).Length);
        using var disk = ImageChain.Open(path);
        Assert.Equal(0, disk.Length);
    }
}
