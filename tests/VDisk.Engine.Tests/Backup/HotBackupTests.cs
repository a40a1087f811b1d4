// Hot backup (issue 11 "Hot backup of a running VM"), the parts that need no daemon: which disks of a domain are
// backed up (writable file disks in a format VDisk reads; the others skipped, or refused when named), where each
// disk's set is, the overlay's name, and the finishing command a stuck commit prints (a valid shell line). The whole
// recipe against a real libvirtd is tests/Module/HotBackup.Tests.ps1.
using VDisk.Engine.Backup;
using VDisk.Engine.Core;
using VDisk.Engine.Libvirt;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Backup;

public class HotBackupTests
{
    private const string Xml = """
        <domain type='qemu'>
          <name>web01</name>
          <devices>
            <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/a.qcow2'/><target dev='vda' bus='virtio'/></disk>
            <disk type='file' device='disk'><source file='/img/b.img'/><target dev='vdb' bus='virtio'/></disk>
            <disk type='block' device='disk'><driver name='qemu' type='raw'/><source dev='/dev/sdz'/><target dev='vdc' bus='virtio'/></disk>
            <disk type='network' device='disk'><driver name='qemu' type='raw'/><source protocol='nbd' name='x'><host name='h'/></source><target dev='vdd' bus='virtio'/></disk>
            <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='/img/ro.img'/><target dev='vde' bus='virtio'/><readonly/></disk>
            <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='sda' bus='sata'/><readonly/></disk>
            <disk type='file' device='disk'><driver name='qemu' type='qed'/><source file='/img/q.qed'/><target dev='vdf' bus='virtio'/></disk>
          </devices>
        </domain>
        """;

    [Fact]
    public void EveryWritableFileDiskIsChosenAndTheOthersAreSkippedWithTheReason()
    {
        var (chosen, skipped) = HotBackup.ChooseDisks(DomainXml.Parse(Xml), null);
        Assert.Equal(new[] { "vda", "vdb" }, chosen.Select(d => d.Target));
        Assert.Equal(5, skipped.Count);
        Assert.Contains(skipped, s => s.Contains("disk vdc is skipped: it is not a file"));
        Assert.Contains(skipped, s => s.Contains("disk vdd is skipped: it is not a file"));
        Assert.Contains(skipped, s => s.Contains("disk vde is skipped: it is read-only"));
        Assert.Contains(skipped, s => s.Contains("disk sda is skipped: it is a cdrom"));
        Assert.Contains(skipped, s => s.Contains("disk vdf is skipped: its format 'qed'"));
    }

    [Fact]
    public void NamedTargetsAreTakenInDomainOrderAndMustExistAndBeBackedUpable()
    {
        var domain = DomainXml.Parse(Xml);
        Assert.Equal(new[] { "vda", "vdb" }, HotBackup.ChooseDisks(domain, new[] { "vdb", "vda", "vdb" }).Chosen.Select(d => d.Target));
        Assert.Equal(VDiskErrorKind.DiskNotFound, Assert.Throws<VDiskException>(() => HotBackup.ChooseDisks(domain, new[] { "vdq" })).Kind);
        var e = Assert.Throws<VDiskException>(() => HotBackup.ChooseDisks(domain, new[] { "vdc" }));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        Assert.Contains("not a file", e.Message);
    }

    [Fact]
    public void EachDiskHasASetNamedAfterDomainAndTargetUnlessTheDestinationIsASetForOneDisk()
    {
        using var temp = new TempFolder();
        Assert.Equal(Path.Combine(temp.Path, "web01-vda"), HotBackup.SetFolderFor(temp.Path, "web01", "vda", 1));
        File.WriteAllText(temp.File(BackupManifest.FileName), "{}");
        Assert.Equal(temp.Path, HotBackup.SetFolderFor(temp.Path, "web01", "vda", 1));
        Assert.Equal(Path.Combine(temp.Path, "web01-vda"), HotBackup.SetFolderFor(temp.Path, "web01", "vda", 2));
    }

    [Fact]
    public void OverlaysGoBesideTheImageWithTheTimeAndANumberWhenTaken()
    {
        using var temp = new TempFolder();
        var time = new DateTimeOffset(2026, 11, 20, 3, 0, 5, TimeSpan.Zero);
        string first = HotBackup.OverlayPathFor(temp.File("vm.qcow2"), time);
        Assert.Equal(temp.File("vm.qcow2.vdisk-backup-20261120T030005Z.qcow2"), first);
        File.WriteAllText(first, "");
        Assert.Equal(temp.File("vm.qcow2.vdisk-backup-20261120T030005Z-2.qcow2"), HotBackup.OverlayPathFor(temp.File("vm.qcow2"), time));
    }

    [Fact]
    public void TheFinishingCommandQuotesWhatTheShellWouldSplit()
    {
        string line = LibvirtBlockJobs.FinishCommand("qemu:///system?socket=/run/x sock", "web 01", "vda", "/img/it's.qcow2.vdisk-backup-1.qcow2");
        Assert.Equal("virsh -c 'qemu:///system?socket=/run/x sock' blockcommit 'web 01' vda --active --shallow --pivot --wait --verbose && " +
            "rm -f -- '/img/it'\\''s.qcow2.vdisk-backup-1.qcow2'", line);
        var (code, output) = HostSetup.TryRun("sh", "-c", "printf '%s|' " + LibvirtBlockJobs.Quote("a b'c") + " " + LibvirtBlockJobs.Quote("/x/y.qcow2"));
        Assert.Equal(0, code);
        Assert.Equal("a b'c|/x/y.qcow2|", output);
    }
}

// The engine against a real libvirtd (LiveLibvirt): a failure or a cancellation injected right after the snapshot
// (HotBackup.Run's afterSnapshot hook) ends with the domain on its images, no overlay left, and the interruption
// itself rethrown; a run with guest writes made after the snapshot backs up the content at the snapshot.
[Collection("LiveLibvirt")]
public class HotBackupLiveTests
{
    [SkippableFact]
    public void InterruptionsAfterTheSnapshotEndOnTheOriginalImagesAndAGoodRunBacksUpTheSnapshot()
    {
        using var daemon = LiveLibvirt.Start();
        string image = Path.Combine(daemon.Folder, "vm.qcow2"), domain = "vdisk-hotx-" + Guid.NewGuid().ToString("N")[..6];
        HostSetup.Run("qemu-img", "create", "-q", "-f", "qcow2", image, "16M");
        HostSetup.Run("qemu-io", "-t", "writeback", "-c", "write -P 0xa1 0 8M", image);
        daemon.StartDomain(domain, image);
        var virsh = new Virsh(daemon.Uri);
        string dest = Path.Combine(daemon.Folder, "backups");
        var options = new BackupOptions { ThrottleLimit = 2 };
        void AssertOnImage()
        {
            Assert.Equal(image, daemon.LiveDisks(domain)["vda"]);
            Assert.Empty(Directory.GetFiles(daemon.Folder, "*" + HotBackup.OverlayMarker + "*"));
        }

        var plan = HotBackup.Plan(virsh, domain, dest, null);
        Assert.True(plan.Live);
        var thrown = Assert.Throws<InvalidOperationException>(() => HotBackup.Run(virsh, plan, options,
            afterSnapshot: p => { Assert.Equal(p.Disks[0].OverlayPath, daemon.LiveDisks(domain)["vda"]); throw new InvalidOperationException("injected"); }));
        Assert.Equal("injected", thrown.Message);
        AssertOnImage();

        using (var cancel = new CancellationTokenSource())
        {
            Assert.ThrowsAny<OperationCanceledException>(() => HotBackup.Run(virsh, HotBackup.Plan(virsh, domain, dest, null), options,
                cancel: cancel.Token, afterSnapshot: _ => cancel.Cancel()));
        }
        AssertOnImage();
        Assert.False(BackupSet.IsSet(Path.Combine(dest, domain + "-vda")));

        // Writes after the snapshot go to the overlay, then into the image; the point holds the content before them.
        var result = HotBackup.Run(virsh, HotBackup.Plan(virsh, domain, dest, new[] { "vda" }), options, afterSnapshot: _ =>
            daemon.Virsh("qemu-monitor-command", domain, "--hmp", "qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -P 0xc2 4M 1M\""));
        Assert.Null(result.CommitError);
        AssertOnImage();
        var point = Assert.Single(result.Disks).Result!;
        Assert.Equal(BackupKind.Full, point.Point.Kind);
        string pointImage = Path.Combine(point.SetPath, point.Point.File);
        Assert.Contains("read 1048576/1048576", HostSetup.Run("qemu-io", "-r", "-c", "read -P 0xa1 4M 1M", pointImage));
        Assert.Contains("read 1048576/1048576", HostSetup.Run("qemu-io", "-r", "-U", "-c", "read -P 0xc2 4M 1M", image));
    }
}
