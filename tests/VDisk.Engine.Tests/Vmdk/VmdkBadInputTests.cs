// Damaged and hostile VMDK input: each case must fail with a VDiskException of the right kind whose
// message names the file (and the field or line) at fault, before anything is sized from bad values.
using System.Buffers.Binary;
using System.Text;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;
using Xunit;

namespace VDisk.Engine.Tests.Vmdk;

public class VmdkBadInputTests
{
    // Byte offsets of header fields (Virtual Disk Format 1.1, SparseExtentHeader).
    private const int VersionField = 4, GrainSizeField = 20, NumGtesField = 44, GdOffsetField = 56, OverheadField = 64;

    private static VDiskException OpenFails(string path, VDiskErrorKind kind, params string[] mentions)
    {
        var e = Assert.Throws<VDiskException>(() => ImageChain.OpenFile(path, null, writable: false).Dispose());
        Assert.Equal(kind, e.Kind);
        foreach (var m in mentions) Assert.Contains(m, e.Message);
        return e;
    }

    private static string CreateSparse(TempFolder dir, ImageSubformat subformat = ImageSubformat.MonolithicSparse, long size = 8 << 20)
    {
        string path = dir.File("d.vmdk");
        CreateImage.Run(path, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = subformat, Size = size });
        return path;
    }

    private static void Patch(string path, long offset, Action<Span<byte>> change, int length = 8)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        var bytes = new byte[length];
        f.Position = offset;
        f.ReadExactly(bytes);
        change(bytes);
        f.Position = offset;
        f.Write(bytes);
    }

    [Fact]
    public void TruncatedHeader()
    {
        using var dir = new TempFolder();
        string path = dir.File("t.vmdk");
        File.WriteAllBytes(path, Encoding.ASCII.GetBytes("KDMV").Concat(new byte[100]).ToArray());
        var e = OpenFails(path, VDiskErrorKind.Corrupt, path, "truncated");
        Assert.Equal(path, e.Path);
    }

    [Fact]
    public void BadMagicInAnExtent()
    {
        using var dir = new TempFolder();
        string path = CreateSparse(dir, ImageSubformat.TwoGbMaxExtentSparse, 3L << 30);
        Patch(dir.File("d-s002.vmdk"), 0, b => "XXXX"u8.CopyTo(b));
        OpenFails(path, VDiskErrorKind.Corrupt, "d-s002.vmdk", "magicNumber");
    }

    [Fact]
    public void GrainDirectoryOffsetPastTheEnd()
    {
        using var dir = new TempFolder();
        string path = CreateSparse(dir);
        Patch(path, GdOffsetField, b => BinaryPrimitives.WriteUInt64LittleEndian(b, 1 << 30));
        OpenFails(path, VDiskErrorKind.Corrupt, path, "gdOffset", "outside the file");
    }

    [Fact]
    public void GrainDirectoryEntryPastTheEnd()
    {
        using var dir = new TempFolder();
        string path = CreateSparse(dir);
        long gd = BinaryPrimitives.ReadInt64LittleEndian(File.ReadAllBytes(path).AsSpan(GdOffsetField));
        Patch(path, gd * 512, b => BinaryPrimitives.WriteUInt32LittleEndian(b, 0x7fffffff), 4);
        OpenFails(path, VDiskErrorKind.Corrupt, path, "grain directory entry 0");
    }

    [Fact]
    public void GrainTableEntryInsideTheMetadata()
    {
        using var dir = new TempFolder();
        string path = CreateSparse(dir);
        var bytes = File.ReadAllBytes(path);
        long gd = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(GdOffsetField));
        uint gt = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan((int)gd * 512));
        Patch(path, gt * 512L, b => BinaryPrimitives.WriteUInt32LittleEndian(b, 3), 4);
        using var disk = ImageChain.Open(path);
        var e = Assert.Throws<VDiskException>(() => disk.Read(0, new byte[512]));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains("inside the metadata", e.Message);
    }

    [Theory]
    [InlineData(VersionField, 9, VDiskErrorKind.Unsupported, "version")]
    [InlineData(GrainSizeField, 3, VDiskErrorKind.Corrupt, "grainSize")]
    [InlineData(GrainSizeField, 96, VDiskErrorKind.Corrupt, "grainSize")]
    [InlineData(NumGtesField, 1024, VDiskErrorKind.Unsupported, "numGTEsPerGT")]
    [InlineData(OverheadField, 1 << 30, VDiskErrorKind.Corrupt, "overHead")]
    public void HeaderFieldsOutOfRange(int field, int value, VDiskErrorKind kind, string name)
    {
        using var dir = new TempFolder();
        string path = CreateSparse(dir);
        Patch(path, field, b => BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)value), 4);
        OpenFails(path, kind, path, name);
    }

    [Fact]
    public void MissingExtentFile()
    {
        using var dir = new TempFolder();
        string path = CreateSparse(dir, ImageSubformat.TwoGbMaxExtentFlat, 3L << 30);
        File.Delete(dir.File("d-f002.vmdk"));
        var e = OpenFails(path, VDiskErrorKind.NotFound, path, dir.File("d-f002.vmdk"), "line");
        Assert.Equal(path, e.Path);
    }

    [Theory]
    [InlineData("RW 2048 FLAT \"../outside-flat.vmdk\" 0", VDiskErrorKind.Unsupported, "leaves the descriptor's folder")]
    [InlineData("RW 2048 FLAT \"d.vmdk\" 0", VDiskErrorKind.Corrupt, "descriptor file itself")]
    [InlineData("RW 2048 FLAT \"d-flat.vmdk\"", VDiskErrorKind.Corrupt, "needs an offset")]
    [InlineData("RW -5 FLAT \"d-flat.vmdk\" 0", VDiskErrorKind.Corrupt, "line 7")]
    [InlineData("RW 2048 SESPARSE \"d-flat.vmdk\"", VDiskErrorKind.Unsupported, "SESPARSE")]
    [InlineData("NOACCESS 2048 FLAT \"d-flat.vmdk\" 0", VDiskErrorKind.Unsupported, "NOACCESS")]
    public void BadExtentLines(string extentLine, VDiskErrorKind kind, string mention)
    {
        using var dir = new TempFolder();
        string path = dir.File("d.vmdk");
        File.WriteAllBytes(dir.File("d-flat.vmdk"), new byte[2048 * 512]);
        File.WriteAllText(path, $"# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n{extentLine}\n");
        OpenFails(path, kind, path, mention);
    }

    [Fact]
    public void DescriptorWithoutContentId()
    {
        using var dir = new TempFolder();
        string path = dir.File("d.vmdk");
        File.WriteAllBytes(dir.File("d-flat.vmdk"), new byte[512]);
        File.WriteAllText(path, "# Disk DescriptorFile\nversion=1\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\nRW 1 FLAT \"d-flat.vmdk\" 0\n");
        OpenFails(path, VDiskErrorKind.Corrupt, path, "CID");
    }

    [Fact]
    public void UnsupportedCreateType()
    {
        using var dir = new TempFolder();
        string path = dir.File("d.vmdk");
        File.WriteAllText(path, "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\ncreateType=\"fullDevice\"\nRW 1 FLAT \"/dev/sda\" 0\n");
        OpenFails(path, VDiskErrorKind.Unsupported, path, "fullDevice");
    }

    [Fact]
    public void StreamWithoutFooter()
    {
        using var dir = new TempFolder();
        string path = CreateSparse(dir, ImageSubformat.StreamOptimized);
        using (var f = new FileStream(path, FileMode.Open)) f.SetLength(f.Length - 512);
        OpenFails(path, VDiskErrorKind.Corrupt, path, "footer");
    }

    [Fact]
    public void DamagedCompressedGrain()
    {
        using var dir = new TempFolder();
        string path = CreateSparse(dir, ImageSubformat.StreamOptimized);
        using (var disk = ImageChain.Open(path, new OpenOptions { Writable = true })) disk.Write(0, VmdkTestData.Pattern(65536, 1));
        Patch(path, 128 * 512 + 12 + 100, b => b.Fill(0xff), 64);
        using var image = ImageChain.Open(path);
        var e = Assert.Throws<VDiskException>(() => image.Read(0, new byte[4096]));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains("cannot be inflated", e.Message);
    }

    [Fact]
    public void NotAVmdkAtAll()
    {
        using var dir = new TempFolder();
        string path = dir.File("raw.img");
        File.WriteAllBytes(path, new byte[4096]);
        var e = Assert.Throws<VDiskException>(() => ImageChain.OpenFile(path, ImageFormat.Vmdk, writable: false));
        Assert.Equal(VDiskErrorKind.NotAnImage, e.Kind);
        Assert.Contains(path, e.Message);
    }

    [Theory]
    [InlineData(ImageSubformat.Dynamic, 1 << 20, 65536)]
    [InlineData(ImageSubformat.MonolithicSparse, 0, 65536)]
    [InlineData(ImageSubformat.MonolithicSparse, 1 << 20, 65536 * 3)]
    [InlineData(ImageSubformat.StreamOptimized, 1 << 20, 2048)]
    public void InvalidCreateOptions(ImageSubformat subformat, long size, int grain)
    {
        using var dir = new TempFolder();
        var e = Assert.Throws<VDiskException>(() => CreateImage.Run(dir.File("d.vmdk"),
            new CreateOptions { Format = ImageFormat.Vmdk, Subformat = subformat, Size = size, ClusterSize = grain }));
        Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        Assert.Empty(Directory.GetFiles(dir.Path));
    }
}
