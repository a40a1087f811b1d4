// The VMDK driver under the shared operations: convert into every subformat (the parallel pipeline
// uses the compressed-grain writer for streamOptimized), and the clean-up of extent files when a
// create or convert fails after they were written.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;
using static VDisk.Engine.Tests.Vmdk.VmdkTestData;

namespace VDisk.Engine.Tests.Vmdk;

public class VmdkConvertTests
{
    [SkippableTheory]
    [InlineData(ImageSubformat.MonolithicSparse, false, "monolithicSparse")]
    [InlineData(ImageSubformat.MonolithicFlat, false, "monolithicFlat")]
    [InlineData(ImageSubformat.TwoGbMaxExtentSparse, false, "twoGbMaxExtentSparse")]
    [InlineData(ImageSubformat.TwoGbMaxExtentFlat, false, "twoGbMaxExtentFlat")]
    [InlineData(ImageSubformat.StreamOptimized, false, "streamOptimized")]
    [InlineData(ImageSubformat.Default, true, "streamOptimized")]
    public void ConvertIntoEverySubformat(ImageSubformat subformat, bool compress, string createType)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        long size = TwoGiB + (5 << 20) + 1536;
        string raw = dir.File("source.raw"), image = dir.File("out.vmdk");
        var writes = ScatteredWrites(size);
        WriteRaw(raw, size, writes);
        var result = ConvertImage.Run(raw, image, new ConvertOptions { DestinationFormat = ImageFormat.Vmdk, Subformat = subformat, Compress = compress });
        Assert.Equal(size, result.VirtualSize);
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp", SearchOption.AllDirectories));
        using (var disk = ImageChain.Open(image))
        {
            Assert.Equal(createType, disk.Driver.Details.Subformat);
            AssertContent(disk, size, writes);
        }
        Qemu.CheckClean(image);
        Qemu.AssertIdentical(image, raw, "-f", "vmdk", "-F", "raw");
        if (createType == "streamOptimized") Assert.True(result.CompressedUnits > 0);
    }

    [Fact]
    public void FailedConvertRemovesTheExtentsItWrote()
    {
        using var dir = new TempFolder();
        string raw = dir.File("source.raw");
        WriteRaw(raw, 3L << 30, ScatteredWrites(3L << 30));
        ImageChain.WritableStorageWrapper.Value = s => new FaultInjectingStorage(s, writesBeforeFailure: 0);
        try
        {
            Assert.ThrowsAny<Exception>(() => ConvertImage.Run(raw, dir.File("out.vmdk"),
                new ConvertOptions { DestinationFormat = ImageFormat.Vmdk, Subformat = ImageSubformat.TwoGbMaxExtentSparse }));
        }
        finally
        {
            ImageChain.WritableStorageWrapper.Value = null;
        }
        Assert.Equal(new[] { "source.raw" }, Directory.GetFiles(dir.Path).Select(Path.GetFileName).ToArray());
    }

    [Fact]
    public void CreateFailingHalfwayRemovesTheExtentsItWrote()
    {
        using var dir = new TempFolder();
        Directory.CreateDirectory(dir.File("d-s002.vmdk")); // the second extent cannot be created
        var e = Assert.Throws<VDiskException>(() => CreateImage.Run(dir.File("d.vmdk"),
            new CreateOptions { Format = ImageFormat.Vmdk, Subformat = ImageSubformat.TwoGbMaxExtentSparse, Size = 5L << 30 }));
        Assert.Contains(e.Kind, new[] { VDiskErrorKind.IoError, VDiskErrorKind.ReadOnly });
        Assert.Empty(Directory.GetFiles(dir.Path));
    }
}
