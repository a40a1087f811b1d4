// Round trips through the VMDK driver on real files: create each subformat, write at awkward offsets,
// reopen and read back; streamOptimized written sequentially (plain writes and the compressed-grain writer).
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vmdk;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;
using Xunit;
using static VDisk.Engine.Tests.Vmdk.VmdkTestData;

namespace VDisk.Engine.Tests.Vmdk;

public class VmdkRoundTripTests
{
    private static readonly OpenOptions Writable = new() { Writable = true };

    public static TheoryData<ImageSubformat, long, string> RandomAccessSubformats => new()
    {
        { ImageSubformat.Default, (64 << 20) + 1536, "monolithicSparse" },
        { ImageSubformat.MonolithicSparse, (64 << 20) + 1536, "monolithicSparse" },
        { ImageSubformat.MonolithicFlat, (64 << 20) + 512, "monolithicFlat" },
        { ImageSubformat.TwoGbMaxExtentSparse, TwoGiB + (3 << 20) + 1536, "twoGbMaxExtentSparse" },
        { ImageSubformat.TwoGbMaxExtentFlat, TwoGiB + (3 << 20) + 1536, "twoGbMaxExtentFlat" },
    };

    [Theory]
    [MemberData(nameof(RandomAccessSubformats))]
    public void WritesSurviveReopen(ImageSubformat subformat, long size, string createType)
    {
        using var dir = new TempFolder();
        string path = dir.File("disk.vmdk");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = subformat, Size = size });
        var writes = ScatteredWrites(size);
        using (var disk = ImageChain.Open(path, Writable))
        {
            Apply(disk, writes);
            AssertContent(disk, size, writes);
        }
        using (var disk = ImageChain.Open(path))
        {
            Assert.Equal(ImageFormat.Vmdk, disk.Format);
            Assert.Equal(createType, disk.Driver.Details.Subformat);
            AssertContent(disk, size, writes);
        }
        // Rewrites of allocated grains go in place; a second session must see both generations correctly.
        var rewrites = new List<(long, byte[])> { (2, Pattern(3000, 7)), (size - 5000, Pattern(4000, 8)) };
        using (var disk = ImageChain.Open(path, Writable)) Apply(disk, rewrites);
        using (var disk = ImageChain.Open(path)) AssertContent(disk, size, writes.Concat(rewrites).ToList());
    }

    [Theory]
    [InlineData(ImageSubformat.MonolithicSparse, new[] { "d.vmdk" })]
    [InlineData(ImageSubformat.StreamOptimized, new[] { "d.vmdk" })]
    [InlineData(ImageSubformat.MonolithicFlat, new[] { "d-flat.vmdk", "d.vmdk" })]
    [InlineData(ImageSubformat.TwoGbMaxExtentSparse, new[] { "d-s001.vmdk", "d-s002.vmdk", "d-s003.vmdk", "d.vmdk" })]
    [InlineData(ImageSubformat.TwoGbMaxExtentFlat, new[] { "d-f001.vmdk", "d-f002.vmdk", "d-f003.vmdk", "d.vmdk" })]
    public void CreateNamesFilesLikeQemuImg(ImageSubformat subformat, string[] expected)
    {
        using var dir = new TempFolder();
        string path = dir.File("d.vmdk");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = subformat, Size = 5L << 30 });
        Assert.Equal(expected, Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order().ToArray());
        using var driver = ImageChain.OpenFile(path, null, writable: false);
        Assert.Equal(expected.Length, driver.Files.Count);
        Assert.Equal(path, driver.Files[0].Name);
        Assert.Equal(5L << 30, driver.VirtualSize);
    }

    [Fact]
    public void FailedCreateLeavesNoFiles()
    {
        using var dir = new TempFolder();
        string path = dir.File("d.vmdk");
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        var options = new CreateOptions { Format = ImageFormat.Vmdk, Subformat = ImageSubformat.TwoGbMaxExtentSparse, Size = 5L << 30 };
        Assert.ThrowsAny<OperationCanceledException>(() => CreateImage.Run(path, options, cancel: cancelled.Token));
        Assert.Empty(Directory.GetFiles(dir.Path));

        File.WriteAllText(dir.File("d-s002.vmdk"), "someone else's file");
        var e = Assert.Throws<VDiskException>(() => CreateImage.Run(path, options));
        Assert.Equal(VDiskErrorKind.AlreadyExists, e.Kind);
        Assert.Equal(new[] { "d-s002.vmdk" }, Directory.GetFiles(dir.Path).Select(Path.GetFileName).ToArray());
    }

    [Fact]
    public void StreamOptimizedSequentialWritesInSmallPieces()
    {
        using var dir = new TempFolder();
        string path = dir.File("s.vmdk");
        long size = (40L << 20) + 1536; // 20 MiB of data spans two grain tables; the last grain is partial
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = ImageSubformat.StreamOptimized, Size = size });
        var data = new byte[size];
        Pattern(20 << 20, 1).CopyTo(data, 0);                 // incompressible
        Array.Fill(data, (byte)0x5a, 24 << 20, 5 << 20);      // compressible
        Pattern(4096, 2).CopyTo(data, size - 4096);           // the partial last grain
        using (var disk = ImageChain.Open(path, Writable))
        {
            for (long pos = 0; pos < size; pos += 4096) disk.Write(pos, data.AsSpan((int)pos, (int)Math.Min(4096, size - pos)));
            AssertContent(disk, size, new[] { (0L, data) });
        }
        using (var disk = ImageChain.Open(path))
        {
            Assert.Equal("streamOptimized", disk.Driver.Details.Subformat);
            Assert.Equal(CompressionType.Zlib, disk.Driver.Details.CompressionType);
            AssertContent(disk, size, new[] { (0L, data) });
            Assert.Equal(ExtentKind.Compressed, disk.Driver.Map(0, size).Kind);
            Assert.Equal(ExtentKind.Unallocated, disk.Driver.Map(21 << 20, size - (21 << 20)).Kind); // zero grains were skipped
        }
        Assert.True(new FileInfo(path).Length < 27L << 20, "the zero and repeated grains should compress away");
    }

    [Fact]
    public void StreamOptimizedThroughTheCompressedGrainWriter()
    {
        using var dir = new TempFolder();
        string path = dir.File("s.vmdk");
        long size = 8L << 20;
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = ImageSubformat.StreamOptimized, Size = size });
        var data = new byte[size];
        for (int g = 0; g < size / Grain; g += 3) Pattern(Grain, g).CopyTo(data, g * Grain);
        using (var disk = ImageChain.Open(path, Writable))
        {
            var writer = Assert.IsAssignableFrom<ICompressedClusterWriter>(disk.Driver);
            Assert.Equal(Grain, writer.CompressionUnit);
            var output = new byte[2 * Grain];
            for (long pos = 0; pos < size; pos += Grain)
            {
                Assert.True(writer.TryCompress(data.AsSpan((int)pos, Grain), output, out int length));
                writer.WriteCompressed(pos, output.AsSpan(0, length));
            }
        }
        using (var disk = ImageChain.Open(path)) AssertContent(disk, size, new[] { (0L, data) });
    }

    [Fact]
    public void StreamOptimizedRefusesRandomRewrites()
    {
        using var dir = new TempFolder();
        string path = dir.File("s.vmdk");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = ImageSubformat.StreamOptimized, Size = 8L << 20 });
        using (var disk = ImageChain.Open(path, Writable))
        {
            disk.Write(5 * Grain, Pattern(Grain, 1));
            disk.Write(5 * Grain + 100, Pattern(100, 2)); // the grain being written may still change
            disk.Write(7 * Grain, Pattern(Grain, 3));
            var e = Assert.Throws<VDiskException>(() => disk.Write(2 * Grain, Pattern(10, 4)));
            Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
            Assert.Contains("increasing guest order", e.Message);
            e = Assert.Throws<VDiskException>(() => disk.Write(5 * Grain, Pattern(10, 5)));
            Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        }
        var reopen = Assert.Throws<VDiskException>(() => ImageChain.Open(path, Writable));
        Assert.Equal(VDiskErrorKind.Unsupported, reopen.Kind);
        Assert.Contains("write-once", reopen.Message);
    }

    [Fact]
    public void StreamOptimizedFlushLeavesACompleteFileAndWritingContinues()
    {
        using var dir = new TempFolder();
        string path = dir.File("s.vmdk"), snapshot = dir.File("snapshot.vmdk");
        long size = 4L << 20;
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = ImageSubformat.StreamOptimized, Size = size });
        var first = (0L, Pattern(Grain + 1000, 1));
        var second = (Grain + 1000L, Pattern(3 * Grain, 2));
        using (var disk = ImageChain.Open(path, Writable))
        {
            disk.Write(first.Item1, first.Item2);
            disk.Flush();
            File.Copy(path, snapshot);
            disk.Write(second.Item1, second.Item2);
        }
        using (var disk = ImageChain.Open(snapshot)) AssertContent(disk, size, new[] { first });
        using (var disk = ImageChain.Open(path)) AssertContent(disk, size, new[] { first, second });
    }

    [Fact]
    public void OpeningForWritingGivesANewContentId()
    {
        using var dir = new TempFolder();
        string path = dir.File("d.vmdk");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vmdk, Size = 1 << 20 });
        uint before;
        using (var driver = (VmdkDriver)ImageChain.OpenFile(path, null, writable: false))
        {
            before = driver.Cid;
            Assert.Equal(0xffffffffu, driver.ParentCid);
        }
        using (ImageChain.Open(path, Writable)) { }
        using (var driver = (VmdkDriver)ImageChain.OpenFile(path, null, writable: false))
        {
            Assert.NotEqual(before, driver.Cid);
            Assert.Equal(0xffffffffu, driver.ParentCid);
        }
    }

    [Fact]
    public void ZeroWritesOnSparseImagesStaySparse()
    {
        using var dir = new TempFolder();
        string path = dir.File("d.vmdk");
        long size = 16 << 20;
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vmdk, Size = size });
        long emptyLength = new FileInfo(path).Length;
        using (var disk = ImageChain.Open(path, Writable))
        {
            disk.WriteZeroes(0, 8 << 20);               // unallocated grains already read as zero
            disk.Write(9 << 20, Pattern(2 * Grain, 1));
            disk.WriteZeroes(9 << 20, 2 * Grain);        // allocated grains are overwritten with zeroes
            AssertContent(disk, size, Array.Empty<(long, byte[])>());
        }
        Assert.Equal(emptyLength + 2 * Grain, new FileInfo(path).Length);
    }
}
