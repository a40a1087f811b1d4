// Commit, pull and rebase against the reference (issue 8 "Proof"): chains of depth 1, 2 and 10 written by qemu-img
// and qemu-io (data at scattered offsets in every layer, zero writes over data beneath), the guest content as
// qemu-img reads it (SHA-256 of `qemu-img convert -O raw`) before and after, `qemu-img check` clean afterwards,
// `qemu-img info --backing-chain` agreeing with our chain listing, and the same operations done by qemu-img
// reading the same.
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class ChainOperationInteropTests
{
    [SkippableTheory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(10)]
    public void CommitIntoTheBaseReadsAsTheTopDidAndDeletesTheOverlays(int depth)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, depth, seed: depth);
        string before = ChainImages.Sha(chain[^1]);
        Assert.NotEqual(before, ChainImages.Sha(chain[0])); // the overlays change what the guest sees

        var result = CommitImage.Run(chain[^1], new CommitOptions { BasePath = chain[0] });

        Assert.Equal(chain[0], result.Base);
        Assert.Equal(before, ChainImages.Sha(chain[0]));
        Qemu.CheckClean(chain[0]);
        Assert.Equal(chain.Skip(1).OrderBy(p => p), result.Deleted.OrderBy(p => p));
        Assert.All(chain.Skip(1), p => Assert.False(File.Exists(p)));
        Assert.True(result.BytesWritten > 0);
    }

    [SkippableTheory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(10)]
    public void CommitKeepingTheOverlaysLeavesTheTopReadingAsBefore(int depth)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, depth, seed: 20 + depth);
        string before = ChainImages.Sha(chain[^1]);
        var topBytes = File.ReadAllBytes(chain[^1]);

        var result = CommitImage.Run(chain[^1], new CommitOptions { KeepOverlays = true });

        Assert.Equal(chain[^2], result.Base); // the immediate backing image by default
        Assert.Empty(result.Deleted);
        Assert.Equal(before, ChainImages.Sha(chain[^2]));
        Assert.Equal(before, ChainImages.Sha(chain[^1]));
        Assert.Equal(topBytes, File.ReadAllBytes(chain[^1])); // kept as it was (qemu-img commit -d)
        Qemu.CheckClean(chain[^2]);
    }

    [SkippableFact]
    public void CommitThroughIntermediatesKeepingOverlaysWarnsThatTheyChanged()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, 3, seed: 31);
        string before = ChainImages.Sha(chain[^1]);
        var warnings = new List<string>();
        using (EngineWarnings.Listen(warnings.Add))
            CommitImage.Run(chain[^1], new CommitOptions { BasePath = chain[0], KeepOverlays = true });
        Assert.Equal(before, ChainImages.Sha(chain[^1]));
        Assert.Equal(before, ChainImages.Sha(chain[0]));
        Assert.Contains(warnings, w => w.Contains(chain[1]) && w.Contains("no longer read"));
    }

    [SkippableTheory]
    [InlineData("qcow2")]
    [InlineData("raw")]
    public void CommitGrowsABaseSmallerThanTheTop(string baseFormat)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string basePath = dir.File("base." + baseFormat);
        Qemu.Img("create", "-q", "-f", baseFormat, basePath, "4M");
        ChainImages.Scatter(basePath, baseFormat, 5, 8, 4 << 20, zeroes: false);
        string top = dir.File("top.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base." + baseFormat, "-F", baseFormat, top, "12M");
        ChainImages.Scatter(top, "qcow2", 6, 10, 12 << 20, zeroes: true);
        string before = ChainImages.Sha(top);

        CommitImage.Run(top, new CommitOptions());

        Assert.Equal(12L << 20, Qemu.Info(basePath).GetProperty("virtual-size").GetInt64());
        Assert.Equal(before, ChainImages.Sha(basePath));
        if (baseFormat == "qcow2") Qemu.CheckClean(basePath);
    }

    // A base with its own, larger backing file grows over it: past its old end it must read zeroes, as the top did.
    [SkippableFact]
    public void AGrowingBaseDoesNotShowItsOwnBackingFileThrough()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        Qemu.Img("create", "-q", "-f", "raw", dir.File("bottom.raw"), "16M");
        Qemu.Io("-f", "raw", "-c", "write -P 0x77 0 16M", dir.File("bottom.raw"));
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", "bottom.raw", "-F", "raw", dir.File("mid.qcow2"), "4M");
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", dir.File("top.qcow2"), "12M");
        Qemu.Io("-f", "qcow2", "-c", "write -P 0x11 5M 64k", dir.File("top.qcow2"));
        string before = ChainImages.Sha(dir.File("top.qcow2"));

        CommitImage.Run(dir.File("top.qcow2"), new CommitOptions());

        Assert.Equal(before, ChainImages.Sha(dir.File("mid.qcow2")));
        Qemu.CheckClean(dir.File("mid.qcow2"));
    }

    [SkippableTheory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(10)]
    public void PullMakesTheTopStandaloneAsQemuImgRebaseDoes(int depth)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, depth, seed: 40 + depth);
        string before = ChainImages.Sha(chain[^1]);
        string theirs = dir.File("theirs.qcow2");
        File.Copy(chain[^1], theirs);
        Qemu.Img("rebase", "-b", "", "-f", "qcow2", theirs);

        var result = RebaseImage.Run(chain[^1], new RebaseOptions());

        Assert.Null(result.BackingName);
        var info = Qemu.Info(chain[^1]);
        Assert.False(info.TryGetProperty("backing-filename", out _));
        Assert.Equal(before, ChainImages.Sha(chain[^1]));
        Assert.Equal(ChainImages.Sha(theirs), ChainImages.Sha(chain[^1]));
        Qemu.CheckClean(chain[^1]);
        Assert.All(chain.SkipLast(1), p => Assert.True(File.Exists(p))); // the backing files are left alone
    }

    [SkippableTheory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(10)]
    public void SafeRebaseOntoAnotherImageKeepsTheGuestView(int depth)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, depth, seed: 60 + depth);
        Directory.CreateDirectory(dir.File("other"));
        string other = dir.File("other/template.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", other, "8M");
        ChainImages.Scatter(other, "qcow2", 99, 12, 8 << 20, zeroes: false);
        string before = ChainImages.Sha(chain[^1]);
        string theirs = dir.File("theirs.qcow2");
        File.Copy(chain[^1], theirs);
        Qemu.Img("rebase", "-b", "other/template.qcow2", "-F", "qcow2", "-f", "qcow2", theirs);

        var result = RebaseImage.Run(chain[^1], new RebaseOptions { BackingPath = other, BackingPathRelative = true });

        Assert.Equal(Path.Combine("other", "template.qcow2"), result.BackingName);
        var qemuChain = ChainImages.QemuChain(chain[^1]);
        Assert.Equal(2, qemuChain.Count);
        Assert.Equal("other/template.qcow2", qemuChain[0].Backing);
        Assert.Equal(before, ChainImages.Sha(chain[^1]));
        Assert.Equal(before, ChainImages.Sha(theirs));
        Qemu.CheckClean(chain[^1]);
        // What qemu-img copied into its copy is what we copied: no more allocated data than qemu-img's.
        var ours = InspectImage.Chain(chain[^1])[0].AllocatedBytes;
        var qemus = InspectImage.Chain(theirs)[0].AllocatedBytes;
        Assert.True(ours <= qemus, $"we hold {ours} bytes, qemu-img {qemus}");
    }

    // Shortening a chain (the new backing image is already in it) copies only what the skipped layers decide.
    [SkippableFact]
    public void RebaseDownTheChainCopiesOnlyTheSkippedLayers()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, 3, seed: 71);
        string before = ChainImages.Sha(chain[^1]);
        long skipped = InspectImage.Chain(chain[2]).Take(2).Sum(n => n.AllocatedBytes); // L2 and L1

        var result = RebaseImage.Run(chain[^1], new RebaseOptions { BackingPath = chain[0], BackingPathRelative = true, BackingMustBeInChain = true });

        Assert.Equal(before, ChainImages.Sha(chain[^1]));
        Assert.True(result.BytesWritten <= skipped, $"copied {result.BytesWritten} bytes; the skipped layers hold {skipped}");
        Assert.Equal(new[] { chain[^1], chain[0] }, ChainImages.QemuChain(chain[^1]).Select(l => l.File));
        Qemu.CheckClean(chain[^1]);
    }

    // Renames of the backing file (unsafe), longer and shorter, then a new format: qemu-img reads every header we write,
    // and we read the one qemu-img writes.
    [SkippableFact]
    public void UnsafeRenamesAreReadByQemuImgAndBack()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, 1, seed: 81);
        string before = ChainImages.Sha(chain[1]);
        foreach (string name in new[] { "a-much-longer-name-for-the-base-image.qcow2", "b.qcow2", "base-copy.qcow2" })
        {
            File.Copy(chain[0], dir.File(name), overwrite: true);
            RebaseImage.Run(chain[1], new RebaseOptions { BackingPath = dir.File(name), BackingPathRelative = true, Unsafe = true });
            Assert.Equal(name, Qemu.Info(chain[1]).GetProperty("backing-filename").GetString());
            Assert.Equal(before, ChainImages.Sha(chain[1]));
            Qemu.CheckClean(chain[1]);
        }
        Qemu.Img("convert", "-O", "raw", chain[0], dir.File("base.raw"));
        RebaseImage.Run(chain[1], new RebaseOptions { BackingPath = dir.File("base.raw"), Unsafe = true });
        var info = Qemu.Info(chain[1]);
        Assert.Equal(dir.File("base.raw"), info.GetProperty("backing-filename").GetString());
        Assert.Equal("raw", info.GetProperty("backing-filename-format").GetString());
        Assert.Equal(before, ChainImages.Sha(chain[1]));

        Qemu.Img("rebase", "-u", "-b", "base.qcow2", "-F", "qcow2", chain[1]);
        var ours = InspectImage.Run(chain[1]);
        Assert.Equal("base.qcow2", ours.BackingPath);
        Assert.Equal(ImageFormat.Qcow2, ours.BackingFormat);
    }

    [SkippableFact]
    public void OurChainListingAgreesWithQemuImgAfterEachOperation()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, 4, seed: 91);
        void Agree(string top)
        {
            var theirs = ChainImages.QemuChain(top);
            var ours = InspectImage.Chain(top);
            Assert.Equal(theirs.Select(l => l.File), ours.Select(n => n.Path));
            Assert.Equal(theirs.Select(l => l.Format), ours.Select(n => FormatProbe.Name(n.Format)));
            Assert.Equal(theirs.Select(l => l.Backing), ours.Select(n => n.BackingPath));
        }
        Agree(chain[^1]);
        CommitImage.Run(chain[^1], new CommitOptions { BasePath = chain[2] });      // L4, L3 into L2
        Agree(chain[2]);
        RebaseImage.Run(chain[2], new RebaseOptions { BackingPath = chain[0], BackingPathRelative = true }); // L2 onto base
        Agree(chain[2]);
        RebaseImage.Run(chain[2], new RebaseOptions());                              // L2 standalone
        Agree(chain[2]);
    }

    [SkippableFact]
    public void OverlaysHoldingSnapshotsAreNotDeleted()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, 2, seed: 101);
        Qemu.Img("snapshot", "-c", "keep-me", chain[1]);
        var bytes = chain.Select(File.ReadAllBytes).ToList();

        var e = Assert.Throws<VDiskException>(() => CommitImage.Run(chain[^1], new CommitOptions { BasePath = chain[0] }));

        Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("snapshot", e.Message);
        Assert.Equal(chain[1], e.Path);
        for (int i = 0; i < chain.Count; i++) Assert.Equal(bytes[i], File.ReadAllBytes(chain[i]));
    }

    [SkippableFact]
    public void ImagesAVirtualMachineHasOpenAreRefused()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, 2, seed: 111);
        var bytes = chain.Select(File.ReadAllBytes).ToList();
        using (new QemuHolder(chain[^1], "qcow2"))
        {
            Assert.Equal(VDiskErrorKind.InUse, Assert.Throws<VDiskException>(() => CommitImage.Run(chain[^1], new CommitOptions())).Kind);
            Assert.Equal(VDiskErrorKind.InUse, Assert.Throws<VDiskException>(() => RebaseImage.Run(chain[^1], new RebaseOptions())).Kind);
            Assert.Equal(VDiskErrorKind.InUse, Assert.Throws<VDiskException>(() => RebaseImage.Run(chain[^1], new RebaseOptions { BackingPath = chain[0], Unsafe = true })).Kind);
        }
        // A VM running on an overlay of the base holds the base as its backing file: the base cannot be committed into.
        string other = dir.File("other-vm.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", other);
        using (new QemuHolder(other, "qcow2"))
            Assert.Equal(VDiskErrorKind.InUse, Assert.Throws<VDiskException>(() => CommitImage.Run(chain[^1], new CommitOptions { BasePath = chain[0] })).Kind);
        for (int i = 0; i < chain.Count; i++) Assert.Equal(bytes[i], File.ReadAllBytes(chain[i]));
    }
}
