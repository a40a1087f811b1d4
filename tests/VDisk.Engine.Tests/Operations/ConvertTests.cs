// Convert: every output qemu-img can check is clean and compares identical to the source; -B writes
// only differences; failures and cancellation leave no output and an untouched source.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Operations;

public class ConvertTests
{
    private const int Size = 24 << 20;

    public static TheoryData<ImageFormat, bool, CompressionType, int> Outputs => new()
    {
        { ImageFormat.Qcow2, false, CompressionType.Zlib, 65536 },
        { ImageFormat.Qcow2, true, CompressionType.Zlib, 65536 },
        { ImageFormat.Qcow2, true, CompressionType.Zstd, 65536 },
        { ImageFormat.Qcow2, true, CompressionType.Zlib, 4096 },
        { ImageFormat.Qcow2, false, CompressionType.Zlib, 2 << 20 },
        { ImageFormat.Raw, false, CompressionType.Zlib, 0 },
        { ImageFormat.Vdi, false, CompressionType.Zlib, 0 },
    };

    [SkippableTheory]
    [MemberData(nameof(Outputs))]
    public void RawConvertsToEachFormatAndBack(ImageFormat format, bool compress, CompressionType type, int clusterSize)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("source.raw");
        SampleData.WriteRaw(source, Size, 3);
        string output = dir.File("out." + FormatProbe.Name(format));
        var result = ConvertImage.Run(source, output, new ConvertOptions
        {
            DestinationFormat = format, Compress = compress, CompressionType = type, ClusterSize = clusterSize == 0 ? null : clusterSize,
        });
        Assert.Equal(Size, result.VirtualSize);
        Assert.Equal(compress, result.CompressedUnits > 0);
        if (format != ImageFormat.Raw) Qemu.CheckClean(output);
        Qemu.AssertIdentical(source, output, "-f", "raw", "-F", FormatProbe.Name(format));
        Assert.True(CompareImages.Run(source, output).Equal);

        string back = dir.File("back.raw");
        ConvertImage.Run(output, back, new ConvertOptions { DestinationFormat = ImageFormat.Raw });
        Assert.Equal(File.ReadAllBytes(source), File.ReadAllBytes(back));
        Assert.True(new FileInfo(back).Length == Size);
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp"));
    }

    [SkippableFact]
    public void CompressedOutputIsSmallerAndSimilarToQemuImgs()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("source.raw");
        SampleData.WriteRaw(source, Size, 4);
        string ours = dir.File("ours.qcow2"), theirs = dir.File("theirs.qcow2");
        ConvertImage.Run(source, ours, new ConvertOptions { Compress = true });
        Qemu.Img("convert", "-c", "-f", "raw", "-O", "qcow2", source, theirs);
        long ourSize = new FileInfo(ours).Length, theirSize = new FileInfo(theirs).Length;
        Assert.True(Math.Abs(ourSize - theirSize) <= theirSize * 0.02 + 65536 * 4, $"ours {ourSize} vs qemu-img {theirSize}");
    }

    [SkippableFact]
    public void BackingOutputHoldsOnlyDifferences()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string template = dir.File("template.raw");
        var baseBytes = SampleData.WriteRaw(template, Size, 5);
        string vm = dir.File("vm.raw");
        var vmBytes = (byte[])baseBytes.Clone();
        Images.Pattern(300_000, 9).CopyTo(vmBytes, 1 << 20);           // changed data
        Array.Clear(vmBytes, 8 << 20, 2 << 20);                          // data zeroed where the template has some
        File.WriteAllBytes(vm, vmBytes);
        string overlay = dir.File("vm.qcow2");
        ConvertImage.Run(vm, overlay, new ConvertOptions { BackingPath = template, BackingFormat = ImageFormat.Raw });
        Qemu.CheckClean(overlay);
        Qemu.AssertIdentical(vm, overlay, "-f", "raw", "-F", "qcow2");
        var info = InspectImage.Run(overlay);
        Assert.Equal("template.raw", info.BackingPath);
        long held = InspectImage.Chain(overlay)[0].AllocatedBytes;
        Assert.True(held <= 2 * 65536 + 300_000, $"the overlay holds {held} bytes; only ~300 KB changed");
    }

    [Fact]
    public void ConvertsAWholeChainFlattened()
    {
        using var dir = new TempFolder();
        string b = Images.Create(dir.File("b.qcow2"), new CreateOptions { Size = 4 << 20 });
        using (var disk = Images.OpenWritable(b)) disk.Write(0, Images.Pattern(4 << 20, 1));
        string t = Images.Create(dir.File("t.qcow2"), new CreateOptions { BackingPath = b });
        var patch = Images.Pattern(5000, 2);
        using (var disk = Images.OpenWritable(t)) disk.Write(100_000, patch);
        string flat = dir.File("flat.qcow2");
        ConvertImage.Run(t, flat, new ConvertOptions());
        Assert.Null(InspectImage.Run(flat).BackingPath);
        Assert.True(CompareImages.Run(t, flat, strict: false).Equal);
    }

    [SkippableFact]
    public void ConvertsTheStateOfAnInternalSnapshot()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = dir.File("vm.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", image, "4M");
        Interop.QemuWrittenQcow2Tests.WriteWithQemuIo(image, "qcow2", "write -P 0x11 0 4M");
        Qemu.Img("snapshot", "-c", "before-upgrade", image);
        Interop.QemuWrittenQcow2Tests.WriteWithQemuIo(image, "qcow2", "write -P 0x22 1M 1M");
        string expected = dir.File("expected.raw");
        Qemu.Img("convert", "-l", "snapshot.name=before-upgrade", "-O", "raw", image, expected);

        string ours = dir.File("snapshot.raw");
        ConvertImage.Run(image, ours, new ConvertOptions { DestinationFormat = ImageFormat.Raw, Snapshot = "before-upgrade" });
        Assert.Equal(File.ReadAllBytes(expected), File.ReadAllBytes(ours));
        ConvertImage.Run(image, dir.File("by-id.raw"), new ConvertOptions { DestinationFormat = ImageFormat.Raw, Snapshot = "1" });
        Assert.Equal(File.ReadAllBytes(expected), File.ReadAllBytes(dir.File("by-id.raw")));

        var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(image, dir.File("x.raw"), new ConvertOptions { DestinationFormat = ImageFormat.Raw, Snapshot = "nope" }));
        Assert.Equal(VDiskErrorKind.SnapshotNotFound, e.Kind);
        Assert.Contains("before-upgrade", e.Message);
    }

    [Fact]
    public void OutputExtentsMayNotReplaceTheSource()
    {
        using var dir = new TempFolder();
        string source = dir.File("disk-flat.vmdk"); // a raw disk that happens to carry the name a flat VMDK's extent gets
        File.WriteAllBytes(source, Images.Pattern(1 << 20, 4));
        var before = File.ReadAllBytes(source);
        var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(source, dir.File("disk.vmdk"), new ConvertOptions
        {
            SourceFormat = ImageFormat.Raw, DestinationFormat = ImageFormat.Vmdk, Subformat = ImageSubformat.MonolithicFlat, Overwrite = true,
        }));
        Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("disk-flat.vmdk", e.Message);
        Assert.Equal(before, File.ReadAllBytes(source));
        Assert.Equal(new[] { source }, Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void SparseThresholdZeroWritesEverything()
    {
        using var dir = new TempFolder();
        string source = dir.File("zero.raw");
        File.WriteAllBytes(source, new byte[2 << 20]);
        string output = dir.File("full.qcow2");
        var result = ConvertImage.Run(source, output, new ConvertOptions { SparseThreshold = 0 });
        Assert.Equal(2 << 20, result.BytesWritten);
        Assert.Equal(2 << 20, InspectImage.Chain(output)[0].AllocatedBytes);
    }

    [Fact]
    public void CancellationLeavesNoOutputAndTheSourceUntouched()
    {
        using var dir = new TempFolder();
        string source = dir.File("source.raw");
        var bytes = SampleData.WriteRaw(source, Size, 6);
        var stamp = File.GetLastWriteTimeUtc(source);
        using var cancel = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.BytesDone > 2 << 20) cancel.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() =>
            ConvertImage.Run(source, dir.File("out.qcow2"), new ConvertOptions { Compress = true }, progress, cancel.Token));
        Assert.Equal(new[] { source }, Directory.GetFiles(dir.Path));
        Assert.Equal(bytes, File.ReadAllBytes(source));
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(source));
    }

    [Fact]
    public void ExistingDestinationIsRefusedWithoutOverwrite()
    {
        using var dir = new TempFolder();
        string source = Images.Create(dir.File("a.qcow2"), new CreateOptions { Size = 1 << 20 });
        string output = dir.File("b.raw");
        File.WriteAllText(output, "keep me");
        var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(source, output, new ConvertOptions { DestinationFormat = ImageFormat.Raw }));
        Assert.Equal(VDiskErrorKind.AlreadyExists, e.Kind);
        Assert.Equal("keep me", File.ReadAllText(output));
        ConvertImage.Run(source, output, new ConvertOptions { DestinationFormat = ImageFormat.Raw, Overwrite = true });
        Assert.Equal(1 << 20, new FileInfo(output).Length);
    }

    [Fact]
    public void ConvertingOntoItselfOrCompressingRawIsRefused()
    {
        using var dir = new TempFolder();
        string source = Images.Create(dir.File("a.qcow2"), new CreateOptions { Size = 1 << 20 });
        Assert.Equal(VDiskErrorKind.DestinationIsSource, Assert.Throws<VDiskException>(() => ConvertImage.Run(source, source, new ConvertOptions { Overwrite = true })).Kind);
        Assert.Equal(VDiskErrorKind.InvalidArgument, Assert.Throws<VDiskException>(() =>
            ConvertImage.Run(source, dir.File("x.raw"), new ConvertOptions { DestinationFormat = ImageFormat.Raw, Compress = true })).Kind);
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Theory]
    [InlineData(false, 3_000_000L)]
    [InlineData(true, 3_000_000L)]
    [InlineData(false, long.MaxValue)]
    public void DiskFullOrIoErrorLeavesNoOutputAndTheSourceUntouched(bool compress, long capacity)
    {
        using var dir = new TempFolder();
        string source = dir.File("source.raw");
        var bytes = SampleData.WriteRaw(source, Size, 7);
        ImageChain.WritableStorageWrapper.Value = s => new FaultInjectingStorage(s, writesBeforeFailure: capacity == long.MaxValue ? 25 : long.MaxValue)
        {
            CapacityBytes = capacity == long.MaxValue ? null : capacity,
        };
        try
        {
            var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(source, dir.File("out.qcow2"), new ConvertOptions { Compress = compress }));
            Assert.Equal(VDiskErrorKind.IoError, e.Kind);
            Assert.Contains(capacity == long.MaxValue ? "injected I/O error" : "No space left", e.Message);
        }
        finally
        {
            ImageChain.WritableStorageWrapper.Value = null;
        }
        Assert.Equal(new[] { source }, Directory.GetFiles(dir.Path));
        Assert.Equal(bytes, File.ReadAllBytes(source));
    }

    private sealed class SyncProgress(Action<OperationProgress> onReport) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value) => onReport(value);
    }
}
