// Backing chains: relative names resolve against the overlay's folder, the recorded format wins over
// probing, and missing files, loops and over-deep chains are clear errors naming the chain.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Core;

public class ChainTests
{
    [Fact]
    public void RelativeBackingPathIsStoredRelativeToTheOverlayFolder()
    {
        using var dir = new TempFolder();
        Directory.CreateDirectory(dir.File("templates"));
        Directory.CreateDirectory(dir.File("vms"));
        string template = Images.Create(dir.File("templates/base.qcow2"), new CreateOptions { Size = 1 << 20 });
        string overlay = Images.Create(dir.File("vms/vm01.qcow2"), new CreateOptions { BackingPath = template });
        var info = InspectImage.Run(overlay);
        Assert.Equal(Path.Combine("..", "templates", "base.qcow2"), info.BackingPath);
        Assert.Equal(template, info.BackingFullPath);
        Assert.Equal(ImageFormat.Qcow2, info.BackingFormat);
        Assert.Equal(1 << 20, info.VirtualSize); // size taken from the backing image
        Assert.Equal(1, info.ChainDepth);
    }

    [Fact]
    public void AbsoluteBackingPathStaysAbsolute()
    {
        using var dir = new TempFolder();
        string template = Images.Create(dir.File("base.raw"), new CreateOptions { Format = ImageFormat.Raw, Size = 1 << 20 });
        string overlay = Images.Create(dir.File("top.qcow2"), new CreateOptions { BackingPath = template, BackingPathRelative = false });
        Assert.Equal(template, InspectImage.Run(overlay).BackingPath);
    }

    [Fact]
    public void RecordedBackingFormatWinsOverProbing()
    {
        using var dir = new TempFolder();
        // A raw backing file whose first bytes look like a qcow2 header: with backing format raw it must be read raw.
        string basePath = dir.File("tricky.raw");
        var content = new byte[1 << 20];
        content[0] = 0x51; content[1] = 0x46; content[2] = 0x49; content[3] = 0xfb;
        File.WriteAllBytes(basePath, content);
        string overlay = Images.Create(dir.File("top.qcow2"), new CreateOptions { BackingPath = basePath, BackingFormat = ImageFormat.Raw });
        using var disk = Images.OpenReadOnly(overlay);
        Assert.Equal(ImageFormat.Raw, disk.Backing!.Format);
        var head = new byte[4];
        disk.Read(0, head);
        Assert.Equal(new byte[] { 0x51, 0x46, 0x49, 0xfb }, head);
    }

    [Fact]
    public void MissingBackingFileNamesTheChain()
    {
        using var dir = new TempFolder();
        string b = Images.Create(dir.File("b.qcow2"), new CreateOptions { Size = 1 << 20 });
        string m = Images.Create(dir.File("m.qcow2"), new CreateOptions { BackingPath = b });
        string t = Images.Create(dir.File("t.qcow2"), new CreateOptions { BackingPath = m });
        File.Delete(b);
        var e = Assert.Throws<VDiskException>(() => InspectImage.Chain(t));
        Assert.Equal(VDiskErrorKind.BackingMissing, e.Kind);
        Assert.Contains($"{t} -> {m} -> {b}", e.Message);
        Assert.NotNull(InspectImage.Run(t).ChainProblem);
        Assert.Throws<VDiskException>(() => ImageChain.Open(t));
    }

    [Fact]
    public void LoopIsDetected()
    {
        using var dir = new TempFolder();
        string a = Images.Create(dir.File("a.qcow2"), new CreateOptions { Size = 1 << 20 });
        string b = Images.Create(dir.File("b.qcow2"), new CreateOptions { BackingPath = a });
        RewriteBacking(a, "b.qcow2");
        var e = Assert.Throws<VDiskException>(() => InspectImage.Chain(b));
        Assert.Equal(VDiskErrorKind.ChainLoop, e.Kind);
        Assert.Contains("loops", e.Message);
    }

    [Fact]
    public void ChainNodesListEveryLayerWithItsAllocation()
    {
        using var dir = new TempFolder();
        string b = Images.Create(dir.File("b.qcow2"), new CreateOptions { Size = 4 << 20 });
        using (var disk = Images.OpenWritable(b)) disk.Write(0, new byte[3 * 65536]);
        string t = Images.Create(dir.File("t.qcow2"), new CreateOptions { BackingPath = b });
        using (var disk = Images.OpenWritable(t)) disk.Write(1 << 20, new byte[] { 1 });
        var nodes = InspectImage.Chain(t);
        Assert.Equal(2, nodes.Count);
        Assert.Equal((0, t, 65536L), (nodes[0].Depth, nodes[0].Path, nodes[0].AllocatedBytes));
        Assert.Equal((1, b, 3 * 65536L), (nodes[1].Depth, nodes[1].Path, nodes[1].AllocatedBytes));
        Assert.Equal("b.qcow2", nodes[0].BackingPath);
    }

    [Fact]
    public void TooDeepChainIsRefused()
    {
        using var dir = new TempFolder();
        string previous = Images.Create(dir.File("l0.qcow2"), new CreateOptions { Size = 65536 });
        for (int i = 1; i <= ImageChain.MaxDepth + 1; i++)
            previous = Images.Create(dir.File($"l{i}.qcow2"), new CreateOptions { BackingPath = previous });
        var e = Assert.Throws<VDiskException>(() => InspectImage.Chain(previous));
        Assert.Equal(VDiskErrorKind.ChainTooDeep, e.Kind);
    }

    [Fact]
    public void ProtocolBackingNamesAreRefused()
    {
        var e = Assert.Throws<VDiskException>(() => ImageChain.ResolveBackingPath("/x/top.qcow2", "nbd://host/export"));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
    }

    private static void RewriteBacking(string image, string backing)
    {
        var bytes = File.ReadAllBytes(image);
        var header = Qcow2Header.Parse(bytes, image);
        header.BackingFile = backing;
        header.BackingFormat = "qcow2";
        header.Serialize().CopyTo(bytes, 0);
        File.WriteAllBytes(image, bytes);
    }
}
