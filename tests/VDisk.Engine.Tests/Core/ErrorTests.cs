// Bad input is a clear VDiskException with a kind and the path; a failed create leaves nothing behind.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Core;

public class ErrorTests
{
    [Fact]
    public void MissingFileIsNotFound()
    {
        using var dir = new TempFolder();
        var e = Assert.Throws<VDiskException>(() => InspectImage.Run(dir.File("nope.qcow2")));
        Assert.Equal(VDiskErrorKind.NotFound, e.Kind);
        Assert.Equal(dir.File("nope.qcow2"), e.Path);
    }

    [Fact]
    public void DirectoryIsNotAnImage()
    {
        using var dir = new TempFolder();
        var e = Assert.Throws<VDiskException>(() => InspectImage.Run(dir.Path));
        Assert.Equal(VDiskErrorKind.NotAnImage, e.Kind);
    }

    [Fact]
    public void ExistingOutputIsRefusedWithoutOverwrite()
    {
        using var dir = new TempFolder();
        string path = dir.File("a.qcow2");
        File.WriteAllText(path, "precious");
        var e = Assert.Throws<VDiskException>(() => CreateImage.Run(path, new CreateOptions { Size = 1 << 20 }));
        Assert.Equal(VDiskErrorKind.AlreadyExists, e.Kind);
        Assert.Equal("precious", File.ReadAllText(path));
        CreateImage.Run(path, new CreateOptions { Size = 1 << 20 }, overwrite: true);
        Assert.Equal(ImageFormat.Qcow2, InspectImage.Run(path).Format);
    }

    [Fact]
    public void InvalidOptionsLeaveNothingBehind()
    {
        using var dir = new TempFolder();
        string path = dir.File("a.qcow2");
        foreach (var bad in new[]
        {
            new CreateOptions { Size = 1 << 20, ClusterSize = 3000 },
            new CreateOptions { Size = 1 << 20, RefcountBits = 3 },
            new CreateOptions { Size = 1 << 20, Compat = "0.10", LazyRefcounts = true },
            new CreateOptions { Size = 1 << 20, Compat = "2.0" },
            new CreateOptions { Size = 1L << 50, ClusterSize = 512 },
            new CreateOptions(),
            new CreateOptions { Format = ImageFormat.Raw, Size = 1 << 20, Preallocation = Preallocation.Metadata },
        })
        {
            var e = Assert.Throws<VDiskException>(() => CreateImage.Run(path, bad));
            Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        }
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void CancelledPreallocationLeavesNothingBehind()
    {
        using var dir = new TempFolder();
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => CreateImage.Run(dir.File("a.qcow2"),
            new CreateOptions { Size = 1 << 30, Preallocation = Preallocation.Full }, cancel: cancel.Token));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void WritesToAReadOnlyImageAreRefused()
    {
        using var dir = new TempFolder();
        string path = Images.Create(dir.File("a.qcow2"), new CreateOptions { Size = 1 << 20 });
        using var disk = ImageChain.Open(path);
        var e = Assert.Throws<VDiskException>(() => disk.Write(0, new byte[1]));
        Assert.Equal(VDiskErrorKind.ReadOnly, e.Kind);
    }

    [Fact]
    public void OutOfRangeAccessIsRefused()
    {
        using var dir = new TempFolder();
        string path = Images.Create(dir.File("a.qcow2"), new CreateOptions { Size = 1 << 20 });
        using var disk = Images.OpenWritable(path);
        Assert.Throws<VDiskException>(() => disk.Write((1 << 20) - 1, new byte[2]));
        Assert.Throws<VDiskException>(() => disk.Read(-1, new byte[1]));
    }
}
