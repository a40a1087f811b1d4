// What every VDisk operation does with the persistent bitmaps of the image it changes (qcow2.rst "Bitmaps": the in_use
// flag and the autoclear bit). Operations that change guest content leave the bitmaps marked in use (qemu-img info says
// "in-use"; QEMU treats them as inconsistent), operations that do not leave them valid, and a full optimize, which would
// drop them, is refused. qemu-img check stays clean (no leaks) after each, and QEMU still writes the image.
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class BitmapOperationInteropTests
{
    private const long Size = 24L << 20;

    public static TheoryData<string, bool> Operations => new()
    {
        { "guest write", true },
        { "grow", true },
        { "grow moving the L1 table", true },
        { "shrink", true },
        { "snapshot revert", true },
        { "unsafe rebase", true },
        { "commit into it", true },
        { "writable open without writes", false },
        { "snapshot create and delete", false },
        { "quick optimize", false },
        { "leak repair", false },
        { "safe rebase onto an identical copy", false },
    };

    [SkippableTheory]
    [MemberData(nameof(Operations))]
    public void OperationsThatChangeGuestContentMarkBitmapsInUseAndTheRestKeepThemValid(string operation, bool changesContent)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string img = dir.File("img.qcow2");
        string backing = dir.File("backing.qcow2");
        bool overlay = operation.Contains("rebase");
        Qemu.Img("create", "-q", "-f", "qcow2", backing, Size.ToString());
        Qemu.Io("-c", "write -P 0x33 0 2M", backing);
        if (overlay) Qemu.Img("create", "-q", "-f", "qcow2", "-b", "backing.qcow2", "-F", "qcow2", img);
        else Qemu.Img("create", "-q", "-f", "qcow2", "-o", operation.Contains("L1") ? "cluster_size=512" : "cluster_size=65536", img,
            (operation.Contains("L1") ? 4L << 20 : Size).ToString());
        Qemu.Io("-c", "write -P 0x11 0 1M", "-c", "write -P 0 3M 64k", img);
        Qemu.Img("bitmap", "--add", img, "b");
        Qemu.Io("-c", "write -P 0x22 512k 4k", img);

        Run(operation, img, dir);

        Qemu.CheckClean(img);
        var bitmap = BitmapImage.List(img).Single();
        BitmapInteropTests.AssertMatchesQemuInfo(img, new[] { bitmap });
        Assert.Equal(changesContent, bitmap.InUse);
        Assert.Equal(!changesContent, bitmap.Consistent);
        Assert.True(bitmap.Enabled);
        if (changesContent)
            Assert.Equal(VDiskErrorKind.Unsupported, Assert.Throws<VDiskException>(() => BitmapImage.Read(img, "b")).Kind);
        else
            Assert.Equal(new[] { new DirtyRange(512 << 10, 64 << 10) }, BitmapImage.Read(img, "b"));

        // QEMU still writes the image and keeps (or keeps ignoring) the bitmap; qemu-img bitmap can remove it.
        Qemu.Io("-c", "write -P 0x44 128k 4k", img);
        Qemu.CheckClean(img);
        Assert.Equal(changesContent, BitmapImage.List(img).Single().InUse);
        Qemu.Img("bitmap", "--remove", img, "b");
        Qemu.CheckClean(img);
        Assert.Empty(BitmapImage.List(img));
    }

    [SkippableFact]
    public void ClearingAnInUseBitmapMakesItTrackFromNowOn()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string img = dir.File("img.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", img, Size.ToString());
        Qemu.Img("bitmap", "--add", img, "b");
        Run("guest write", img, dir);
        Assert.True(BitmapImage.List(img).Single().InUse);
        var cleared = BitmapImage.Clear(img, "b");
        Assert.True(cleared.Consistent && cleared.Enabled && !cleared.InUse);
        Qemu.Io("-c", "write -P 0x44 8M 4k", img);
        Assert.Equal(new[] { new DirtyRange(8 << 20, 64 << 10) }, BitmapImage.Read(img, "b"));
        Qemu.CheckClean(img);
    }

    [SkippableFact]
    public void ReadOnlyUseChangesNoByteOfTheFile()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string img = dir.File("img.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", img, Size.ToString());
        Qemu.Img("bitmap", "--add", img, "b");
        Qemu.Io("-c", "write -P 0x22 512k 4k", img);
        var before = File.ReadAllBytes(img);
        using (var disk = Images.OpenReadOnly(img)) Images.ReadAll(disk);
        Assert.Single(InspectImage.Run(img).Details.Bitmaps);
        Assert.Single(BitmapImage.Read(img, "b"));
        CheckImage.Run(img);
        MapImage.Run(img).ToList();
        Assert.Equal(before, File.ReadAllBytes(img));
    }

    [SkippableFact]
    public void AFullOptimizeThatWouldDropBitmapsIsRefusedNamingThem()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string img = dir.File("img.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", img, Size.ToString());
        Qemu.Img("bitmap", "--add", img, "nightly");
        var before = File.ReadAllBytes(img);
        var e = Assert.Throws<VDiskException>(() => OptimizeImage.Run(img, full: true));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        Assert.Contains("'nightly'", e.Message);
        Assert.Equal(before, File.ReadAllBytes(img));
    }

    private static void Run(string operation, string img, TempFolder dir)
    {
        switch (operation)
        {
            case "guest write":
                using (var disk = Images.OpenWritable(img)) disk.Write(5L << 20, new byte[] { 1, 2, 3 });
                break;
            case "grow":
                ResizeImage.Run(img, new ResizeOptions { Size = Size + (8L << 20) });
                break;
            case "grow moving the L1 table":
                ResizeImage.Run(img, new ResizeOptions { Size = 8L << 20 }); // 128 L1 entries (1 KiB) to 256: the table moves
                break;
            case "shrink":
                ResizeImage.Run(img, new ResizeOptions { Size = 16L << 20, Shrink = true });
                break;
            case "snapshot revert":
                var taken = SnapshotImage.Create(img, "s1");
                using (var disk = Images.OpenWritable(img)) { } // nothing written: the bitmap stays valid until the revert
                Assert.False(BitmapImage.List(img).Single().InUse);
                SnapshotImage.Apply(img, taken.Id);
                break;
            case "snapshot create and delete":
                SnapshotImage.Delete(img, SnapshotImage.Create(img, "s1").Id);
                break;
            case "unsafe rebase":
                RebaseImage.Run(img, new RebaseOptions { BackingPath = null, Unsafe = true });
                break;
            case "safe rebase onto an identical copy":
                File.Copy(dir.File("backing.qcow2"), dir.File("copy.qcow2"));
                var rebased = RebaseImage.Run(img, new RebaseOptions { BackingPath = dir.File("copy.qcow2"), BackingPathRelative = true });
                Assert.Equal(0, rebased.BytesWritten);
                break;
            case "commit into it":
                string top = dir.File("top.qcow2");
                Qemu.Img("create", "-q", "-f", "qcow2", "-b", "img.qcow2", "-F", "qcow2", top);
                Qemu.Io("-c", "write -P 0x55 6M 64k", top);
                CommitImage.Run(top, new CommitOptions());
                break;
            case "writable open without writes":
                using (Images.OpenWritable(img)) { }
                break;
            case "quick optimize":
                var optimized = OptimizeImage.Run(img);
                Assert.True(optimized.ZeroedClusters > 0);
                break;
            case "leak repair":
                long leaked;
                using (var driver = (Qcow2Driver)Engine.Chain.ImageChain.OpenFile(img, ImageFormat.Qcow2, writable: true))
                    leaked = driver.Image.AllocateClusters(3).Clusters; // counted, never linked: leaks
                Assert.Equal(leaked, CheckImage.Run(img, RepairMode.Leaks).LeaksFixed);
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(operation));
        }
    }
}
