// Issue 7, item 1: -Force (Overwrite) never replaces an image a running VM has open. A real qemu-io holds the
// destination for writing, with QEMU's locks; converting or creating over it must fail with InUse and leave the
// very same file (inode) with the same content. And while VDisk replaces an image, nobody can open the old one.
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Operations;

public class ReplaceInUseTests
{
    [SkippableFact]
    public void ConvertWithOverwriteRefusesADestinationQemuHasOpen()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("src.raw");
        SampleData.WriteRaw(source, 4 << 20, 1);
        string destination = dir.File("dst.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", destination, "8M");
        Qemu.Io("-c", "write -P 0x5a 0 1M", destination);
        var (inode, content) = Snapshot(destination);

        using (new QemuHolder(destination, "qcow2"))
        {
            var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(source, destination, new ConvertOptions { Overwrite = true }));
            Assert.Equal(VDiskErrorKind.InUse, e.Kind);
            Assert.Equal(destination, e.Path);
            Assert.Contains("not replaced", e.Message);
            var e2 = Assert.Throws<VDiskException>(() => CreateImage.Run(destination, new CreateOptions { Size = 1 << 30 }, overwrite: true));
            Assert.Equal(VDiskErrorKind.InUse, e2.Kind);
            Assert.Equal((inode, content), Snapshot(destination));
        }
        Assert.Equal((inode, content), Snapshot(destination));
        Assert.Equal(new[] { destination, source }, Directory.GetFiles(dir.Path).Order());

        ConvertImage.Run(source, destination, new ConvertOptions { Overwrite = true }); // with the VM gone, -Force works
        Assert.NotEqual(inode, HostFileInfo.Of(destination).Inode);
    }

    [SkippableFact]
    public void OverwriteRefusesAVmdkWhoseExtentQemuHasOpenAndKeepsTheExtent()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("src.raw");
        SampleData.WriteRaw(source, 4 << 20, 2);
        string destination = dir.File("disk.vmdk");
        Qemu.Img("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", destination, "4M");
        Qemu.Io("-f", "vmdk", "-c", "write -P 0x6b 0 1M", destination);
        string extent = dir.File("disk-flat.vmdk");
        var before = Snapshot(extent);

        using (new QemuHolder(destination, "vmdk"))
        {
            var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(source, destination, new ConvertOptions
            {
                DestinationFormat = ImageFormat.Vmdk, Subformat = ImageSubformat.MonolithicFlat, Overwrite = true,
            }));
            Assert.Equal(VDiskErrorKind.InUse, e.Kind);
        }
        Assert.Equal(before, Snapshot(extent));
    }

    [SkippableFact]
    public void OverwriteRefusesTheBackingFileOfAnOverlayQemuHasOpen()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("src.raw");
        SampleData.WriteRaw(source, 4 << 20, 4);
        string template = dir.File("base.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", template, "8M");
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", template, "-F", "qcow2", dir.File("vm.qcow2"));
        var before = Snapshot(template);

        using (new QemuHolder(dir.File("vm.qcow2"), "qcow2")) // the VM reads its template
        {
            var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(source, template, new ConvertOptions { Overwrite = true }));
            Assert.Equal(VDiskErrorKind.InUse, e.Kind);
        }
        Assert.Equal(before, Snapshot(template));
    }

    [SkippableFact]
    public void TheReplacedImageStaysLockedUntilTheNewOneIsInPlace()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("src.raw");
        SampleData.WriteRaw(source, 8 << 20, 3);
        string destination = dir.File("dst.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", destination, "8M");
        ulong oldInode = HostFileInfo.Of(destination).Inode;
        (int ExitCode, string Output)? duringConversion = null;
        var progress = new SyncProgress(_ => duringConversion ??= Qemu.TryImg("info", destination));

        ConvertImage.Run(source, destination, new ConvertOptions { Overwrite = true, ThrottleLimit = 1 }, progress);

        Assert.NotNull(duringConversion);
        Assert.NotEqual(0, duringConversion.Value.ExitCode); // a VM starting now on the old file would be refused
        Assert.Contains("lock", duringConversion.Value.Output);
        Assert.NotEqual(oldInode, HostFileInfo.Of(destination).Inode);
        Assert.Equal(0, Qemu.TryImg("info", destination).ExitCode); // released afterwards
    }

    private static (ulong Inode, string Sha256) Snapshot(string path)
        => (HostFileInfo.Of(path).Inode, Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(path))));

    private sealed class SyncProgress(Action<OperationProgress> onReport) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value) => onReport(value);
    }
}
