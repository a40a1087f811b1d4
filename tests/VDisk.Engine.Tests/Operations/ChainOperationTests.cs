// Commit, pull and rebase in the engine alone (issue 8 "Backing chains", "Errors"): each error names the image and
// the problem and changes nothing; a pull stopped by Ctrl+C or failed by a full disk leaves the image as it was;
// names are stored relative or absolute as given; bases of every format the engine writes.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Operations;

public class ChainOperationTests
{
    private const long Size = 4 << 20;

    [Fact]
    public void CommittingAStandaloneImageIsNoBacking()
    {
        using var dir = new TempFolder();
        string image = Images.Create(dir.File("alone.qcow2"), new CreateOptions { Size = Size });
        var e = Assert.Throws<VDiskException>(() => CommitImage.Run(image, new CommitOptions()));
        Assert.Equal(VDiskErrorKind.NoBacking, e.Kind);
        Assert.Equal(image, e.Path);
        Assert.Contains("no backing file", e.Message);
    }

    [Fact]
    public void ABaseNotInTheChainIsRefusedNamingTheChain()
    {
        using var dir = new TempFolder();
        var (basePath, top) = Pair(dir);
        string stranger = Images.Create(dir.File("stranger.qcow2"), new CreateOptions { Size = Size });
        var before = Snapshot(dir);

        var e = Assert.Throws<VDiskException>(() => CommitImage.Run(top, new CommitOptions { BasePath = stranger }));
        Assert.Equal(VDiskErrorKind.NotInChain, e.Kind);
        Assert.Contains($"{top} -> {basePath}", e.Message);
        Assert.Contains(stranger, e.Message);

        var self = Assert.Throws<VDiskException>(() => CommitImage.Run(top, new CommitOptions { BasePath = top }));
        Assert.Equal(VDiskErrorKind.NotInChain, self.Kind);
        Assert.Contains("is the image itself", self.Message);

        var pull = Assert.Throws<VDiskException>(() => RebaseImage.Run(top, new RebaseOptions { BackingPath = stranger, BackingMustBeInChain = true }));
        Assert.Equal(VDiskErrorKind.NotInChain, pull.Kind);
        Assert.Equal(before, Snapshot(dir));
    }

    [Fact]
    public void ABaseNamedThroughASymbolicLinkIsTheBase()
    {
        using var dir = new TempFolder();
        var (basePath, top) = Pair(dir);
        var expected = Read(top);
        File.CreateSymbolicLink(dir.File("link.qcow2"), basePath);
        var result = CommitImage.Run(top, new CommitOptions { BasePath = dir.File("link.qcow2") });
        Assert.Equal(basePath, result.Base);
        Assert.Equal(expected, Read(basePath));
    }

    [Theory]
    [InlineData(ImageFormat.Raw)]
    [InlineData(ImageFormat.Vdi)]
    [InlineData(ImageFormat.Vmdk)]
    public void CommitsIntoABaseOfEveryFormatTheEngineWrites(ImageFormat format)
    {
        using var dir = new TempFolder();
        string basePath = Images.Create(dir.File("base." + FormatProbe.Name(format)), new CreateOptions { Format = format, Size = Size });
        using (var disk = Images.OpenWritable(basePath)) disk.Write(0, Images.Pattern((int)Size, 1));
        string top = Images.Create(dir.File("top.qcow2"), new CreateOptions { BackingPath = basePath, ClusterSize = 4096 });
        using (var disk = Images.OpenWritable(top))
        {
            disk.Write(12345 * 8, Images.Pattern(300_000, 2));
            disk.WriteZeroes(2 << 20, 1 << 20);
        }
        var expected = Read(top);
        CommitImage.Run(top, new CommitOptions());
        Assert.Equal(expected, Read(basePath));
        Assert.False(File.Exists(top));
    }

    [Fact]
    public void ABaseThatCannotGrowIsRefusedBeforeAnythingChanges()
    {
        using var dir = new TempFolder();
        string basePath = Images.Create(dir.File("base.vdi"), new CreateOptions { Format = ImageFormat.Vdi, Size = Size / 2 });
        string top = Images.Create(dir.File("top.qcow2"), new CreateOptions { BackingPath = basePath, Size = Size });
        using (var disk = Images.OpenWritable(top)) disk.Write(Size - 4096, new byte[4096]);
        var before = Snapshot(dir);
        var e = Assert.Throws<VDiskException>(() => CommitImage.Run(top, new CommitOptions()));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        Assert.Equal(basePath, e.Path);
        Assert.Contains("cannot grow", e.Message);
        Assert.Equal(before, Snapshot(dir));
    }

    [Fact]
    public void OnlyQcow2ImagesCanBeRebased()
    {
        using var dir = new TempFolder();
        string raw = Images.Create(dir.File("disk.raw"), new CreateOptions { Format = ImageFormat.Raw, Size = Size });
        string other = Images.Create(dir.File("other.qcow2"), new CreateOptions { Size = Size });
        var e = Assert.Throws<VDiskException>(() => RebaseImage.Run(raw, new RebaseOptions { BackingPath = other }));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        Assert.Contains("only qcow2", e.Message);
        Assert.Equal(raw, RebaseImage.Run(raw, new RebaseOptions()).Path); // standalone already: nothing to do
    }

    [Fact]
    public void AMissingNewBackingFileIsRefusedUnlessUnsafeWithItsFormat()
    {
        using var dir = new TempFolder();
        var (_, top) = Pair(dir);
        var before = Snapshot(dir);
        foreach (bool unsafeMode in new[] { false, true })
        {
            var e = Assert.Throws<VDiskException>(() => RebaseImage.Run(top, new RebaseOptions { BackingPath = dir.File("gone.qcow2"), Unsafe = unsafeMode }));
            Assert.Equal(VDiskErrorKind.BackingMissing, e.Kind);
            Assert.Contains("gone.qcow2", e.Message);
        }
        Assert.Equal(before, Snapshot(dir));
        RebaseImage.Run(top, new RebaseOptions { BackingPath = dir.File("later.qcow2"), BackingPathRelative = true, BackingFormat = ImageFormat.Qcow2, Unsafe = true });
        var info = InspectImage.Run(top);
        Assert.Equal("later.qcow2", info.BackingPath);
        Assert.Equal(ImageFormat.Qcow2, info.BackingFormat);
    }

    [Fact]
    public void ABackingFileWhoseChainLeadsBackIsALoop()
    {
        using var dir = new TempFolder();
        var (basePath, top) = Pair(dir);
        var before = Snapshot(dir);
        foreach (bool unsafeMode in new[] { false, true })
        {
            var loop = Assert.Throws<VDiskException>(() => RebaseImage.Run(basePath, new RebaseOptions { BackingPath = top, Unsafe = unsafeMode }));
            Assert.Equal(VDiskErrorKind.ChainLoop, loop.Kind);
            Assert.Contains($"{basePath} -> {top} -> {basePath}", loop.Message);
            var self = Assert.Throws<VDiskException>(() => RebaseImage.Run(top, new RebaseOptions { BackingPath = top, Unsafe = unsafeMode }));
            Assert.Equal(VDiskErrorKind.ChainLoop, self.Kind);
        }
        Assert.Equal(before, Snapshot(dir));
    }

    [Fact]
    public void ASafeRebaseNeedsTheOldChainAndAnUnsafeOneFixesIt()
    {
        using var dir = new TempFolder();
        var (basePath, top) = Pair(dir);
        File.Move(basePath, dir.File("moved.qcow2"));
        var e = Assert.Throws<VDiskException>(() => RebaseImage.Run(top, new RebaseOptions { BackingPath = dir.File("moved.qcow2") }));
        Assert.Equal(VDiskErrorKind.BackingMissing, e.Kind);
        Assert.Contains("unsafe one only rewrites the reference", e.Message);

        RebaseImage.Run(top, new RebaseOptions { BackingPath = dir.File("moved.qcow2"), BackingPathRelative = true, Unsafe = true });
        File.Move(dir.File("moved.qcow2"), basePath);
        Assert.Equal(VDiskErrorKind.BackingMissing, Assert.Throws<VDiskException>(() => Read(top)).Kind); // now it names moved.qcow2
    }

    [Fact]
    public void NamesAreStoredRelativeToTheImageFolderOrAbsoluteAsGiven()
    {
        using var dir = new TempFolder();
        Directory.CreateDirectory(dir.File("templates"));
        Directory.CreateDirectory(dir.File("vms"));
        string template = Images.Create(dir.File("templates/t.qcow2"), new CreateOptions { Size = Size });
        string vm = Images.Create(dir.File("vms/vm.qcow2"), new CreateOptions { Size = Size });
        Assert.Equal(Path.Combine("..", "templates", "t.qcow2"),
            RebaseImage.Run(vm, new RebaseOptions { BackingPath = template, BackingPathRelative = true }).BackingName);
        Assert.Equal(Path.Combine("..", "templates", "t.qcow2"), InspectImage.Run(vm).BackingPath);
        Assert.Equal(template, RebaseImage.Run(vm, new RebaseOptions { BackingPath = template }).BackingName);
        Assert.Equal(template, InspectImage.Run(vm).BackingPath);
    }

    [Fact]
    public void APullStoppedByCtrlCLeavesTheImageAsItWas()
    {
        using var dir = new TempFolder();
        var (_, top) = Pair(dir, baseData: (int)Size);
        var expected = Read(top);
        long allocated = InspectImage.Chain(top)[0].AllocatedBytes;
        using var cancel = new CancellationTokenSource();
        int reports = 0;
        var progress = new Progress(p => { if (++reports == 1) cancel.Cancel(); });

        Assert.ThrowsAny<OperationCanceledException>(() => RebaseImage.Run(top, new RebaseOptions { ThrottleLimit = 1 }, progress, cancel.Token));

        Assert.True(reports >= 1);
        var info = InspectImage.Run(top);
        Assert.Equal("base.qcow2", info.BackingPath);
        Assert.Equal(allocated, InspectImage.Chain(top)[0].AllocatedBytes);
        Assert.Equal(expected, Read(top));
    }

    [Fact]
    public void APullThatFillsTheDiskLeavesTheImageAsItWas()
    {
        using var dir = new TempFolder();
        var (_, top) = Pair(dir, baseData: (int)Size);
        var expected = Read(top);
        long allocated = InspectImage.Chain(top)[0].AllocatedBytes;
        long capacity = new FileInfo(top).Length + (1 << 20); // room for a quarter of the data
        ImageChain.WritableStorageWrapper.Value = s => new FaultInjectingStorage(s, long.MaxValue) { CapacityBytes = capacity };
        try
        {
            Assert.ThrowsAny<IOException>(() => RebaseImage.Run(top, new RebaseOptions()));
        }
        finally
        {
            ImageChain.WritableStorageWrapper.Value = null;
        }
        Assert.Equal("base.qcow2", InspectImage.Run(top).BackingPath);
        Assert.Equal(allocated, InspectImage.Chain(top)[0].AllocatedBytes);
        Assert.Equal(expected, Read(top));
    }

    // base.qcow2 holding `baseData` bytes of data, and top.qcow2 over it with a little of its own.
    private static (string Base, string Top) Pair(TempFolder dir, int baseData = 1 << 20)
    {
        string basePath = Images.Create(dir.File("base.qcow2"), new CreateOptions { Size = Size });
        using (var disk = Images.OpenWritable(basePath)) disk.Write(0, Images.Pattern(baseData, 7));
        string top = Images.Create(dir.File("top.qcow2"), new CreateOptions { BackingPath = basePath });
        using (var disk = Images.OpenWritable(top)) disk.Write(512 << 10, Images.Pattern(100_000, 8));
        return (basePath, top);
    }

    private static byte[] Read(string image)
    {
        using var disk = Images.OpenReadOnly(image);
        return Images.ReadAll(disk);
    }

    // Every file of the folder and its bytes, to prove an operation changed nothing.
    private static Dictionary<string, string> Snapshot(TempFolder dir) => Directory.GetFiles(dir.Path)
        .ToDictionary(f => Path.GetFileName(f), f => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f))));

    private sealed class Progress(Action<OperationProgress> report) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value) => report(value);
    }
}
