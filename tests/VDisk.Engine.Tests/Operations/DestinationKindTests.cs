// Issue 7, items 2, 5 and 6 in the engine: destinations that no image can replace (character devices, FIFOs,
// sockets) are refused and left as they are; an alias of the source (symbolic or hard link) is the source; a
// destination that appears while a conversion runs is AlreadyExists; a dangling symbolic link is NotFound; a size
// that overflows is "too large".
using System.Net.Sockets;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Operations;

public class DestinationKindTests
{
    [Theory]
    [InlineData("fifo", HostFileType.Fifo)]
    [InlineData("socket", HostFileType.Socket)]
    [InlineData("link-to-dev-null", HostFileType.CharacterDevice)]
    public void NodesThatCannotTakeAnImageAreRefusedAndKept(string name, HostFileType type)
    {
        using var dir = new TempFolder();
        string source = dir.File("src.raw");
        SampleData.WriteRaw(source, 1 << 20, 4);
        string node = dir.File(name);
        using var socket = MakeNode(node, type);
        Assert.Equal(type, HostFileInfo.Of(node).Type);

        var convert = Assert.Throws<VDiskException>(() => ConvertImage.Run(source, node, new ConvertOptions { DestinationFormat = ImageFormat.Raw, Overwrite = true }));
        var create = Assert.Throws<VDiskException>(() => CreateImage.Run(node, new CreateOptions { Format = ImageFormat.Raw, Size = 1 << 20 }, overwrite: true));

        foreach (var e in new[] { convert, create })
        {
            Assert.Equal(VDiskErrorKind.UnsupportedDestination, e.Kind);
            Assert.Equal(node, e.Path);
        }
        Assert.Equal(type, HostFileInfo.Of(node).Type);
        Assert.Equal(new[] { node, source }.Order(), Directory.GetFileSystemEntries(dir.Path).Order());
    }

    [SkippableFact]
    public void ACharacterDeviceNodeIsRefusedAndKept()
    {
        HostSetup.RequireRoot();
        using var dir = new TempFolder();
        string source = dir.File("src.raw");
        SampleData.WriteRaw(source, 1 << 20, 4);
        string node = dir.File("null");
        HostSetup.Run("mknod", "-m", "666", node, "c", "1", "3"); // a private /dev/null

        var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(source, node, new ConvertOptions { DestinationFormat = ImageFormat.Raw, Overwrite = true }));

        Assert.Equal(VDiskErrorKind.UnsupportedDestination, e.Kind);
        Assert.Contains("character device", e.Message);
        Assert.Equal(HostFileType.CharacterDevice, HostFileInfo.Of(node).Type);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ALinkToTheSourceIsTheSource(bool symbolic)
    {
        using var dir = new TempFolder();
        string source = dir.File("src.raw");
        var bytes = SampleData.WriteRaw(source, 1 << 20, 5);
        string link = dir.File("link.raw");
        if (symbolic) File.CreateSymbolicLink(link, source);
        else HostSetup.Run("ln", source, link);

        var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(source, link, new ConvertOptions { DestinationFormat = ImageFormat.Raw, Overwrite = true }));

        Assert.Equal(VDiskErrorKind.DestinationIsSource, e.Kind);
        Assert.Contains("link to the source", e.Message);
        Assert.Equal(symbolic ? source : null, new FileInfo(link).LinkTarget);
        Assert.Equal(HostFileInfo.Of(source), HostFileInfo.Of(link));
        Assert.Equal(bytes, File.ReadAllBytes(source));
    }

    [Fact]
    public void ALinkToABackingFileIsRefusedToo()
    {
        using var dir = new TempFolder();
        string template = Images.Create(dir.File("base.qcow2"), new CreateOptions { Size = 1 << 20 });
        string overlay = Images.Create(dir.File("top.qcow2"), new CreateOptions { BackingPath = template });
        File.CreateSymbolicLink(dir.File("alias.qcow2"), template);
        var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(overlay, dir.File("alias.qcow2"), new ConvertOptions { Overwrite = true }));
        Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("which the conversion reads", e.Message);
    }

    [Fact]
    public void ADestinationCreatedMeanwhileIsAlreadyExistsAndKept()
    {
        using var dir = new TempFolder();
        string source = dir.File("src.raw");
        SampleData.WriteRaw(source, 4 << 20, 6);
        string destination = dir.File("out.qcow2");
        bool created = false;
        var progress = new SyncProgress(_ =>
        {
            if (created) return;
            File.WriteAllText(destination, "the other run's output"); // another conversion finishing first
            created = true;
        });

        var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(source, destination, new ConvertOptions(), progress));

        Assert.Equal(VDiskErrorKind.AlreadyExists, e.Kind);
        Assert.Equal(destination, e.Path);
        Assert.Equal("the other run's output", File.ReadAllText(destination));
        Assert.Equal(new[] { destination, source }.Order(), Directory.GetFiles(dir.Path).Order());
    }

    [Fact]
    public void ADanglingSymbolicLinkIsNotFound()
    {
        using var dir = new TempFolder();
        string link = dir.File("gone.qcow2");
        File.CreateSymbolicLink(link, dir.File("missing.qcow2"));
        var e = Assert.Throws<VDiskException>(() => ImageChain.Open(link));
        Assert.Equal(VDiskErrorKind.NotFound, e.Kind);
        Assert.Contains("missing.qcow2", e.Message);
    }

    [Theory]
    [InlineData(ImageFormat.Raw, long.MaxValue)]
    [InlineData(ImageFormat.Qcow2, long.MaxValue)]
    [InlineData(ImageFormat.Vmdk, long.MaxValue)]
    [InlineData(ImageFormat.Vdi, long.MaxValue - 100)]
    public void ASizeThatCannotBeRoundedToSectorsIsTooLarge(ImageFormat format, long size)
    {
        using var dir = new TempFolder();
        string path = dir.File("huge");
        var e = Assert.Throws<VDiskException>(() => CreateImage.Run(path, new CreateOptions { Format = format, Size = size }));
        Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        Assert.Contains($"Size {size} bytes is too large", e.Message);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    private static IDisposable? MakeNode(string path, HostFileType type)
    {
        switch (type)
        {
            case HostFileType.Fifo:
                HostSetup.MakeFifo(path);
                return null;
            case HostFileType.Socket:
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                socket.Bind(new UnixDomainSocketEndPoint(path));
                return socket;
            default:
                File.CreateSymbolicLink(path, "/dev/null");
                return null;
        }
    }

    private sealed class SyncProgress(Action<OperationProgress> onReport) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value) => onReport(value);
    }
}
