// The text descriptor: parsing QEMU's and VMware's spelling, QEMU's geometry, and CID rewriting that
// keeps every other line as it was.
using System.Text;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vmdk;
using Xunit;

namespace VDisk.Engine.Tests.Vmdk;

public class VmdkDescriptorTests
{
    // A descriptor as VMware Workstation writes it (CRLF line ends, comments, extra keys, quoted values).
    private const string VMwareStyle =
        "# Disk DescriptorFile\r\nversion=1\r\nencoding=\"UTF-8\"\r\nCID=fffffffe\r\nparentCID=ffffffff\r\n" +
        "isNativeSnapshot=\"no\"\r\ncreateType=\"twoGbMaxExtentSparse\"\r\n\r\n# Extent description\r\n" +
        "RW 8323072 SPARSE \"Windows-s001.vmdk\"\r\nRDONLY 2048 FLAT \"Windows-pt.vmdk\" 63\r\n\r\n" +
        "# The Disk Data Base \r\n#DDB\r\n\r\nddb.adapterType = \"lsilogic\"\r\nddb.geometry.cylinders = \"522\"\r\n" +
        "ddb.uuid = \"60 00 C2 9b\"\r\n";

    [Fact]
    public void ParsesVMwareSpelling()
    {
        var d = VmdkDescriptor.Parse(Encoding.UTF8.GetBytes(VMwareStyle), "x.vmdk");
        Assert.Equal(0xfffffffeu, d.Cid);
        Assert.Equal(VmdkDescriptor.NoParent, d.ParentCid);
        Assert.Equal("twoGbMaxExtentSparse", d.CreateType);
        Assert.Null(d.ParentFileNameHint);
        Assert.Equal(new VmdkExtentLine("RW", 8323072, "SPARSE", "Windows-s001.vmdk", 0, 10), d.Extents[0]);
        Assert.Equal(new VmdkExtentLine("RDONLY", 2048, "FLAT", "Windows-pt.vmdk", 63, 11), d.Extents[1]);
        Assert.Equal("lsilogic", d.Ddb["ddb.adapterType"]);
        Assert.Equal("60 00 C2 9b", d.Ddb["ddb.uuid"]);
    }

    [Fact]
    public void NewContentIdChangesOnlyTheCidLine()
    {
        var d = VmdkDescriptor.Parse(Encoding.UTF8.GetBytes(VMwareStyle), "x.vmdk");
        string text = d.WithCid(0x1234abcd);
        Assert.Equal(VMwareStyle.Replace("CID=fffffffe", "CID=1234abcd"), text);
        Assert.Equal(0x1234abcdu, VmdkDescriptor.Parse(Encoding.UTF8.GetBytes(text), "x.vmdk").Cid);
    }

    [Fact]
    public void BuildsQemuTemplate()
    {
        var extents = new[] { new VmdkExtentLine("RW", 10485760, "FLAT", "d-flat.vmdk", 0, 0) };
        string text = VmdkDescriptor.Build("monolithicFlat", 0x992d7100, VmdkDescriptor.NoParent, null, extents, 5L << 30);
        Assert.Equal(
            "# Disk DescriptorFile\nversion=1\nCID=992d7100\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n" +
            "# Extent description\nRW 10485760 FLAT \"d-flat.vmdk\" 0\n\n# The Disk Data Base\n#DDB\n\n" +
            "ddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"10402\"\nddb.geometry.heads = \"16\"\n" +
            "ddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\nddb.toolsVersion = \"2147483647\"\n", text);
        var parsed = VmdkDescriptor.Parse(Encoding.UTF8.GetBytes(text), "d.vmdk");
        Assert.Equal(extents[0] with { LineNumber = 8 }, parsed.Extents.Single());
    }

    [Theory]
    [InlineData(5L << 30, "ide", 10402, 16)]
    [InlineData(5L << 30, "lsilogic", 652, 255)]
    [InlineData(1L << 20, "ide", 2, 16)]
    public void GeometryLikeQemu(long size, string adapter, long cylinders, int heads)
        => Assert.Equal((cylinders, heads, 63), VmdkDescriptor.Geometry(size, adapter));

    [Fact]
    public void RejectsOversizedDescriptors()
    {
        var e = Assert.Throws<VDiskException>(() => VmdkDescriptor.Parse(new byte[VmdkDescriptor.MaxBytes + 1].Select(_ => (byte)'#').ToArray(), "big.vmdk"));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains("big.vmdk", e.Message);
    }

    [Fact]
    public void RejectsTooManyExtents()
    {
        var text = new StringBuilder("CID=1\nparentCID=ffffffff\n");
        for (int i = 0; i <= VmdkDescriptor.MaxExtents; i++) text.Append("RW 1 FLAT \"f\" 0\n");
        var e = Assert.Throws<VDiskException>(() => VmdkDescriptor.Parse(Encoding.UTF8.GetBytes(text.ToString()), "many.vmdk"));
        Assert.Contains("more than", e.Message);
    }
}
