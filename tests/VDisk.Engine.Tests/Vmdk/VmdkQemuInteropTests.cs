// Interop with the reference, qemu-img 7.2: images qemu-img writes read back byte for byte here, and
// images written here pass qemu-img check, compare equal with qemu-img compare and show the right info.
using System.Text.Json;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using Xunit;
using static VDisk.Engine.Tests.Vmdk.VmdkTestData;

namespace VDisk.Engine.Tests.Vmdk;

public class VmdkQemuInteropTests
{
    private static readonly OpenOptions Writable = new() { Writable = true };

    public static TheoryData<string, ImageSubformat, long> Subformats => new()
    {
        { "monolithicSparse", ImageSubformat.MonolithicSparse, (64 << 20) + 1536 },
        { "monolithicFlat", ImageSubformat.MonolithicFlat, (64 << 20) + 1536 },
        { "twoGbMaxExtentSparse", ImageSubformat.TwoGbMaxExtentSparse, TwoGiB + (3 << 20) + 1536 },
        { "twoGbMaxExtentFlat", ImageSubformat.TwoGbMaxExtentFlat, TwoGiB + (3 << 20) + 1536 },
        { "streamOptimized", ImageSubformat.StreamOptimized, (64 << 20) + 1536 },
    };

    [QemuTheory]
    [MemberData(nameof(Subformats))]
    public void QemuConvertOutputReadsByteForByte(string subformat, ImageSubformat _, long size)
    {
        QemuTools.Require();
        using var dir = new TempFolder();
        string raw = dir.File("source.raw"), image = dir.File("q.vmdk");
        WriteRaw(raw, size, ScatteredWrites(size));
        QemuTools.Img("convert", "-f", "raw", "-O", "vmdk", "-o", $"subformat={subformat}", raw, image);
        using var disk = ImageChain.Open(image);
        Assert.Equal(subformat, disk.Driver.Details.Subformat);
        AssertSameAsRaw(disk, raw);
    }

    [QemuTheory]
    [MemberData(nameof(Subformats))]
    public void QemuIoWritesReadBack(string subformat, ImageSubformat _, long size)
    {
        QemuTools.Require();
        using var dir = new TempFolder();
        string image = dir.File("q.vmdk");
        QemuTools.Img("create", "-q", "-f", "vmdk", "-o", $"subformat={subformat}", image, size.ToString());
        // streamOptimized accepts only whole grains in increasing order; the others take any sector-aligned write.
        string[] commands = subformat == "streamOptimized"
            ? new[] { "write -P 0xab 1M 64k", "write -P 0xcd 2M 128k", $"write -P 0xef {size - 1536 - Grain} {Grain + 1536}" }
            : new[] { "write -P 0xab 1M 64k", "write -P 0xcd 3146240 1024", $"write -P 0xef {size - 4096} 4096", "write -P 0x11 0 512" };
        QemuTools.Io(image, "vmdk", commands);
        var writes = commands.Select(c => c.Split(' ')).Select(p =>
            (Offset: ParseSize(p[3]), Data: Enumerable.Repeat(Convert.ToByte(p[2], 16), (int)ParseSize(p[4])).ToArray())).ToList();
        using var disk = ImageChain.Open(image);
        AssertContent(disk, size, writes);
    }

    [QemuFact]
    public void QemuZeroedGrainsReadAsZero()
    {
        QemuTools.Require();
        using var dir = new TempFolder();
        string image = dir.File("z.vmdk");
        QemuTools.Img("create", "-q", "-f", "vmdk", "-o", "zeroed_grain=on", image, "4M");
        QemuTools.Io(image, "vmdk", "write -P 0x77 0 1M", "write -z 256k 128k");
        using var disk = ImageChain.Open(image);
        Assert.Equal("2", disk.Driver.Details.Compat);
        Assert.Equal(ExtentKind.Zero, disk.Driver.Map(256 << 10, 128 << 10).Kind);
        var expected = Enumerable.Repeat((byte)0x77, 1 << 20).ToArray();
        Array.Clear(expected, 256 << 10, 128 << 10);
        AssertContent(disk, 4 << 20, new[] { (0L, expected) });
    }

    [QemuTheory]
    [MemberData(nameof(Subformats))]
    public void QemuAcceptsWhatWeWrite(string subformat, ImageSubformat format, long size)
    {
        QemuTools.Require();
        using var dir = new TempFolder();
        string raw = dir.File("source.raw"), image = dir.File("ours.vmdk");
        var writes = ScatteredWrites(size);
        WriteRaw(raw, size, writes);
        CreateImage.Run(image, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = format, Size = size });
        using (var disk = ImageChain.Open(image, Writable))
        {
            if (format == ImageSubformat.StreamOptimized) CopySequentially(raw, disk);
            else Apply(disk, writes);
        }
        var (code, output, error) = QemuTools.TryImg("check", image);
        Assert.True(code == 0 && output.Contains("No errors were found"), $"qemu-img check: exit {code}: {output}{error}");
        QemuTools.Img("compare", "-f", "vmdk", "-F", "raw", image, raw);
        using var info = JsonDocument.Parse(QemuTools.Img("info", "--output=json", image));
        Assert.Equal(size, info.RootElement.GetProperty("virtual-size").GetInt64());
        Assert.Equal("vmdk", info.RootElement.GetProperty("format").GetString());
        var data = info.RootElement.GetProperty("format-specific").GetProperty("data");
        Assert.Equal(subformat, data.GetProperty("create-type").GetString());
        Assert.Equal(0xffffffffL, data.GetProperty("parent-cid").GetInt64());
    }

    [QemuTheory]
    [InlineData(ImageSubformat.MonolithicSparse)]
    [InlineData(ImageSubformat.StreamOptimized)]
    public void QemuReadsOtherGrainSizes(ImageSubformat format)
    {
        QemuTools.Require();
        using var dir = new TempFolder();
        string raw = dir.File("source.raw"), image = dir.File("g.vmdk");
        long size = (5 << 20) + 512;
        var writes = ScatteredWrites(size);
        WriteRaw(raw, size, writes);
        CreateImage.Run(image, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = format, Size = size, ClusterSize = 4096 });
        using (var disk = ImageChain.Open(image, Writable))
        {
            if (format == ImageSubformat.StreamOptimized) CopySequentially(raw, disk);
            else Apply(disk, writes);
        }
        QemuTools.Img("compare", "-f", "vmdk", "-F", "raw", image, raw);
        using var info = JsonDocument.Parse(QemuTools.Img("info", "--output=json", image));
        Assert.Equal(4096, info.RootElement.GetProperty("cluster-size").GetInt32());
    }

    [QemuFact]
    public void EmptyImagesWeCreateAreValidForQemu()
    {
        QemuTools.Require();
        using var dir = new TempFolder();
        foreach (var s in new[] { ImageSubformat.MonolithicSparse, ImageSubformat.StreamOptimized, ImageSubformat.TwoGbMaxExtentSparse })
        {
            string image = dir.File($"{s}.vmdk");
            CreateImage.Run(image, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = s, Size = 3L << 30 });
            Assert.Contains("No errors were found", QemuTools.Img("check", image));
            QemuTools.Img("convert", "-f", "vmdk", "-O", "raw", image, dir.File($"{s}.raw"));
            Assert.Equal(3L << 30, new FileInfo(dir.File($"{s}.raw")).Length);
            using var info = JsonDocument.Parse(QemuTools.Img("info", "--output=json", image));
            Assert.Equal(3L << 30, info.RootElement.GetProperty("virtual-size").GetInt64());
            Assert.Equal(0, info.RootElement.GetProperty("actual-size").GetInt64() >> 22); // a few KiB of metadata
        }
    }

    [QemuFact]
    public void MonolithicSparseHeaderMatchesQemuImgByteForByte()
    {
        QemuTools.Require();
        using var dir = new TempFolder();
        string ours = dir.File("ours.vmdk"), theirs = dir.File("theirs.vmdk");
        CreateImage.Run(ours, new CreateOptions { Format = ImageFormat.Vmdk, Size = 5L << 30 });
        QemuTools.Img("create", "-q", "-f", "vmdk", theirs, (5L << 30).ToString());
        Assert.Equal(new FileInfo(theirs).Length, new FileInfo(ours).Length);
        byte[] a = File.ReadAllBytes(ours), b = File.ReadAllBytes(theirs);
        Assert.Equal(b.AsSpan(0, 512).ToArray(), a.AsSpan(0, 512).ToArray());   // header
        Assert.Equal(b.AsSpan(21 * 512).ToArray(), a.AsSpan(21 * 512).ToArray()); // directories and tables
    }

    [QemuFact]
    public void BackingChainsWorkBothWays()
    {
        QemuTools.Require();
        using var dir = new TempFolder();
        long size = 8 << 20;
        string baseImage = dir.File("base.vmdk"), qemuChild = dir.File("qchild.vmdk"), ourChild = dir.File("child.vmdk"), raw = dir.File("expected.raw");
        QemuTools.Img("create", "-q", "-f", "vmdk", baseImage, size.ToString());
        QemuTools.Io(baseImage, "vmdk", "write -P 0x41 0 4M");
        var baseData = (0L, Enumerable.Repeat((byte)0x41, 4 << 20).ToArray());

        QemuTools.Img("create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", qemuChild);
        QemuTools.Io(qemuChild, "vmdk", "write -P 0x42 1M 64k");
        using (var disk = ImageChain.Open(qemuChild))
        {
            Assert.Equal(new BackingReference("base.vmdk", ImageFormat.Vmdk), disk.Driver.Backing);
            AssertContent(disk, size, new[] { baseData, (1L << 20, Enumerable.Repeat((byte)0x42, Grain).ToArray()) });
        }

        CreateImage.Run(ourChild, new CreateOptions { Format = ImageFormat.Vmdk, Size = size, BackingPath = baseImage });
        var ourWrite = (3L << 20) + 100;
        using (var disk = ImageChain.Open(ourChild, Writable)) disk.Write(ourWrite, Pattern(5000, 9));
        var writes = new[] { baseData, (ourWrite, Pattern(5000, 9)) };
        WriteRaw(raw, size, writes);
        QemuTools.Img("compare", "-f", "vmdk", "-F", "raw", ourChild, raw);
        using var info = JsonDocument.Parse(QemuTools.Img("info", "--output=json", ourChild));
        Assert.Equal("base.vmdk", info.RootElement.GetProperty("backing-filename").GetString());
    }

    private static void CopySequentially(string raw, VirtualDisk disk)
    {
        var buffer = new byte[1 << 20];
        using var source = File.OpenRead(raw);
        for (long pos = 0; pos < disk.Length;)
        {
            int n = source.Read(buffer);
            disk.Write(pos, buffer.AsSpan(0, n));
            pos += n;
        }
    }

    private static long ParseSize(string s) => s[^1] switch
    {
        'k' => long.Parse(s[..^1]) << 10,
        'M' => long.Parse(s[..^1]) << 20,
        _ => long.Parse(s),
    };
}
