// Sizes at the edges, with qemu-img as the reference: a virtual size of 0 in every format VDisk writes (qemu-img
// check must find no leak, as for what qemu-img create makes), and sizes that are not whole sectors (QEMU keeps
// qcow2 sizes rounded down to a sector, raw file lengths rounded up).
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Corpus;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class EdgeSizeInteropTests
{
    [SkippableTheory]
    [InlineData("1.1")]
    [InlineData("0.10")]
    public void AnEmptyQcow2IsCleanAndLaidOutAsQemuImgLaysItOut(string compat)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string ours = dir.File("ours.qcow2"), theirs = dir.File("theirs.qcow2");
        CreateImage.Run(ours, new CreateOptions { Size = 0, Compat = compat });
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", $"compat={compat}", theirs, "0");
        Qemu.CheckClean(ours);
        Assert.Equal(new FileInfo(theirs).Length, new FileInfo(ours).Length);
        Assert.Equal(0UL, Bytes.ReadBe64(File.ReadAllBytes(ours), 40)); // l1_table_offset, as qemu-img writes it
        Assert.Equal(0, InspectImage.Run(ours).VirtualSize);
    }

    [SkippableTheory]
    [InlineData(ImageFormat.Qcow2)]
    [InlineData(ImageFormat.Vdi)]
    [InlineData(ImageFormat.Raw)]
    public void ConvertingAnEmptyDiskGivesACleanEmptyImage(ImageFormat format)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string empty = dir.File("empty.img"), emptyQcow2 = dir.File("empty-source.qcow2");
        File.WriteAllBytes(empty, Array.Empty<byte>());
        Qemu.Img("create", "-q", "-f", "qcow2", emptyQcow2, "0");
        foreach (string source in new[] { empty, emptyQcow2 })
        {
            string output = dir.File($"from-{Path.GetFileNameWithoutExtension(source)}.{FormatProbe.Name(format)}");
            ConvertImage.Run(source, output, new ConvertOptions { DestinationFormat = format });
            if (format != ImageFormat.Raw) Qemu.CheckClean(output);
            Assert.Equal(0, Qemu.Info(output).GetProperty("virtual-size").GetInt64());
        }
    }

    [Fact]
    public void AnEmptyVmdkIsRefusedBecauseQemuCannotReadTheOneItWouldMake()
    {
        using var dir = new TempFolder();
        var e = Assert.Throws<VDiskException>(() => CreateImage.Run(dir.File("empty.vmdk"), new CreateOptions { Format = ImageFormat.Vmdk, Size = 0 }));
        Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        Assert.False(File.Exists(dir.File("empty.vmdk")));
    }

    [SkippableFact]
    public void AQcow2SizeThatIsNotWholeSectorsIsRoundedDownAsQemuDoes()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = dir.File("odd.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", image, "64M");
        Qemu.Io("-c", "write -P 0xab 67108352 512", image);
        using (var f = new FileStream(image, FileMode.Open, FileAccess.ReadWrite))
        {
            var size = new byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(size, (64 << 20) + 1);
            f.Position = 24;
            f.Write(size);
        }
        long qemuSize = Qemu.Info(image).GetProperty("virtual-size").GetInt64();
        Assert.Equal(64L << 20, qemuSize);
        Assert.Equal(qemuSize, InspectImage.Run(image).VirtualSize);
        string ours = dir.File("ours.raw"), theirs = dir.File("theirs.raw");
        ConvertImage.Run(image, ours, new ConvertOptions { DestinationFormat = ImageFormat.Raw });
        Qemu.Img("convert", "-O", "raw", image, theirs);
        Assert.Equal(File.ReadAllBytes(theirs), File.ReadAllBytes(ours));
        Assert.Equal(0xab, File.ReadAllBytes(ours)[^1]);
    }

    [SkippableFact]
    public void ARawFileThatIsNotWholeSectorsIsRoundedUpAsQemuDoes()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string raw = dir.File("odd.img");
        File.WriteAllBytes(raw, Images.Pattern(1000, 3));
        long qemuSize = Qemu.Info(raw).GetProperty("virtual-size").GetInt64();
        Assert.Equal(1024, qemuSize);
        Assert.Equal(qemuSize, InspectImage.Run(raw).VirtualSize);
        string output = dir.File("out.qcow2");
        ConvertImage.Run(raw, output, new ConvertOptions { DestinationFormat = ImageFormat.Qcow2 });
        Qemu.AssertIdentical(raw, output, "-f", "raw", "-F", "qcow2");
    }
}
