// The raw format: sparse and preallocated creation, holes mapped as zero runs, discard.
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Raw;

public class RawDriverTests
{
    [Theory]
    [InlineData(Preallocation.Off)]
    [InlineData(Preallocation.Falloc)]
    [InlineData(Preallocation.Full)]
    public void CreatesWithEachPreallocation(Preallocation mode)
    {
        using var dir = new TempFolder();
        string path = Images.Create(dir.File("d.raw"), new CreateOptions { Format = ImageFormat.Raw, Size = 8 << 20, Preallocation = mode });
        var info = InspectImage.Run(path);
        Assert.Equal(ImageFormat.Raw, info.Format);
        Assert.Equal(8 << 20, info.VirtualSize);
        if (OperatingSystem.IsLinux())
        {
            if (mode == Preallocation.Off) Assert.True(info.FileSize < 1 << 20, $"sparse file uses {info.FileSize} bytes");
            else Assert.True(info.FileSize >= 8 << 20, $"preallocated file uses only {info.FileSize} bytes");
        }
    }

    [Fact]
    public void SizesRoundUpToWholeSectorsLikeQemuImg()
    {
        using var dir = new TempFolder();
        string path = Images.Create(dir.File("odd.raw"), new CreateOptions { Format = ImageFormat.Raw, Size = 1000 });
        Assert.Equal(1024, new FileInfo(path).Length);
    }

    [Fact]
    public void RoundTripsAndReportsHolesAsZero()
    {
        using var dir = new TempFolder();
        string path = Images.Create(dir.File("d.raw"), new CreateOptions { Format = ImageFormat.Raw, Size = 16 << 20 });
        var data = Images.Pattern(70_000, 4);
        using (var disk = Images.OpenWritable(path))
        {
            disk.Write(5 << 20, data);
            disk.WriteZeroes(5 << 20, 4096);
            Array.Clear(data, 0, 4096);
        }
        using var reader = Images.OpenReadOnly(path);
        var back = new byte[data.Length];
        reader.Read(5 << 20, back);
        Assert.Equal(data, back);
        if (OperatingSystem.IsLinux())
        {
            var status = reader.GetBlockStatus(0, reader.Length);
            Assert.Equal(ExtentKind.Zero, status.Kind);
            Assert.Equal((5 << 20) + 4096, status.Length); // the zeroed first page was punched out too
        }
    }
}
