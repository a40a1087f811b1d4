// Bus changes of a disk (libvirt formatdomain "Hard drives, floppy disks, CDROMs" target/address and "Controllers"):
// only the disk's target, driver and address lines and the controller change; a virtio-scsi controller is reused or
// added (never lsilogic); target names and units are free ones; boot order is kept; every output passes
// virt-xml-validate; what the QEMU driver refuses is reported by rule.
using VDisk.Engine.Core;
using VDisk.Engine.Libvirt;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Libvirt;

public class DomainBusTests
{
    private static readonly string CorpusFolder = Path.Combine(AppContext.BaseDirectory, "Libvirt", "Corpus");

    private static DomainXml Load(string name) => DomainXml.Parse(File.ReadAllText(Path.Combine(CorpusFolder, name)), name);

    private static void AssertValid(DomainXml domain)
    {
        var (code, output) = LibvirtTools.Validate(domain.Text);
        Assert.True(code == 0, output + "\n" + domain.Text);
    }

    [Fact]
    public void VirtioBlkToVirtioScsiReusesTheVirtioScsiController()
    {
        var domain = Load("i440fx-virtio-blk-and-scsi.xml");
        var edited = domain.WithBus("vda", DiskBus.VirtioScsi, null, null, out string target);
        Assert.Equal("sdb", target);
        var diff = LineDiff.Compare(domain.Text, edited.Text);
        Assert.Equal(new[]
        {
            "-       <target dev='vda' bus='virtio'/>",
            "-       <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>",
            "+       <target dev='sdb' bus='scsi'/>",
            "+       <address type='drive' controller='0' bus='0' target='0' unit='1'/>",
        }.Order(), diff.Order());
        Assert.Single(DomainXml.Parse(edited.Text).Disks, d => d.Target == "sdb" && d.Bus == DiskBus.VirtioScsi);
        Assert.Equal(1, edited.Text.Split("<controller type='scsi'").Length - 1);
        Assert.Empty(DomainRules.Check(edited));
        LibvirtTools.Require("virt-xml-validate", "xmllint");
        AssertValid(edited);
    }

    [Fact]
    public void AVirtioScsiControllerIsAddedWithQueuesAndIoThreadWhenThereIsNone()
    {
        var domain = Load("q35-sata-cdrom-network.xml");
        Assert.Throws<VDiskException>(() => domain.WithBus("vda", DiskBus.VirtioScsi, 4, 1, out _)); // db01 defines no iothread
        var edited = domain.WithBus("vda", DiskBus.VirtioScsi, 4, null, out string target);
        Assert.Equal("sdd", target); // sda..sdc are the sata disks: one sd namespace
        Assert.Contains("model='pcie-root'/>\n    <controller type='scsi' index='0' model='virtio-scsi'>\n      <driver queues='4'/>\n    </controller>\n    <interface", edited.Text);
        var disk = DomainXml.Parse(edited.Text).Disk("sdd");
        Assert.Equal(DiskBus.VirtioScsi, disk.Bus);
        Assert.Null(disk.Queues); // queues is the controller's now
        Assert.Contains("<address type='drive' controller='0' bus='0' target='0' unit='0'/>", edited.Text);
        Assert.DoesNotContain(DomainRules.Check(edited), v => v.Target == "sdd");
        LibvirtTools.Require("virt-xml-validate", "xmllint");
        AssertValid(edited);
    }

    [Fact]
    public void ControllerIoThreadIsSetOnTheReusedController()
    {
        var domain = Load("i440fx-virtio-blk-and-scsi.xml"); // <iothreads>1</iothreads>
        var edited = domain.WithBus("vda", DiskBus.VirtioScsi, 2, 1, out _);
        Assert.Contains("<controller type='scsi' index='0' model='virtio-scsi'>\n      <driver queues='2' iothread='1'/>\n      <address type='pci'", edited.Text);
        var error = Assert.Throws<VDiskException>(() => domain.WithBus("vda", DiskBus.VirtioScsi, null, 3, out _));
        Assert.Equal(VDiskErrorKind.DomainRuleViolated, error.Kind);
        Assert.Contains("IoThreadNotDefined", error.Message);
    }

    [Fact]
    public void SataToVirtioScsiKeepsTheSdName()
    {
        var domain = Load("q35-sata-cdrom-network.xml");
        var edited = domain.WithBus("sda", DiskBus.VirtioScsi, null, null, out string target);
        Assert.Equal("sda", target);
        var diff = LineDiff.Compare(domain.Text, edited.Text);
        Assert.Contains("-       <target dev='sda' bus='sata'/>", diff);
        Assert.Contains("+       <target dev='sda' bus='scsi'/>", diff);
        Assert.Equal(DiskBus.VirtioScsi, DomainXml.Parse(edited.Text).Disk("sda").Bus);
    }

    [Fact]
    public void SataToVirtioBlkRemovesTheDriveAddressAndKeepsBootOrder()
    {
        var domain = Load("q35-sata-cdrom-network.xml");
        var edited = domain.WithBus("sda", DiskBus.VirtioBlk, 2, null, out string target);
        Assert.Equal("vdb", target);
        var disk = DomainXml.Parse(edited.Text).Disk("vdb");
        Assert.Equal((DiskBus.VirtioBlk, 1, 2), (disk.Bus, disk.BootOrder, disk.Queues));
        var diff = LineDiff.Compare(domain.Text, edited.Text);
        Assert.Equal(5, diff.Count); // driver, target and address out; driver and target in
        Assert.Contains(diff, l => l.Contains("<address type='drive' controller='0' bus='0' target='0' unit='0'/>") && l.StartsWith('-'));
        Assert.DoesNotContain(diff, l => l.Contains("boot"));
        Assert.DoesNotContain(DomainRules.Check(edited), v => v.Target == "vdb");
        LibvirtTools.Require("virt-xml-validate", "xmllint");
        AssertValid(edited);
    }

    [Fact]
    public void VirtioBlkToSataTakesAFreeUnitAndDropsVirtioOptions()
    {
        var domain = Load("q35-sata-cdrom-network.xml");
        var edited = domain.WithBus("vda", DiskBus.Sata, null, null, out string target);
        Assert.Equal("sdd", target);
        // sda is unit 0, sdb unit 1, sdc has no address: libvirt derives unit 2 from its name.
        Assert.Contains("<address type='drive' controller='0' bus='0' target='0' unit='3'/>", edited.Text);
        Assert.Equal(DiskBus.Sata, DomainXml.Parse(edited.Text).Disk("sdd").Bus);
        LibvirtTools.Require("virt-xml-validate", "xmllint");
        AssertValid(edited);
    }

    [Fact]
    public void EveryMoveOfEveryCorpusDiskKeepsTheOtherDisksAndValidates()
    {
        LibvirtTools.Require("virt-xml-validate", "xmllint");
        foreach (string file in Directory.GetFiles(CorpusFolder, "*.xml").Where(f => !f.Contains("schema-invalid")))
        {
            var domain = DomainXml.Parse(File.ReadAllText(file), file);
            foreach (var disk in domain.Disks.Where(d => d.Bus is DiskBus.VirtioBlk or DiskBus.VirtioScsi or DiskBus.Sata))
                foreach (var bus in new[] { DiskBus.VirtioBlk, DiskBus.VirtioScsi, DiskBus.Sata })
                {
                    var edited = domain.WithBus(disk.Target, bus, null, null, out string target);
                    var reread = DomainXml.Parse(edited.Text);
                    Assert.Equal(bus, reread.Disk(target).Bus);
                    Assert.Equal(bus == disk.Bus ? disk : disk with { Target = target, Bus = bus, Queues = null, IoThread = null }, reread.Disk(target));
                    foreach (var other in domain.Disks.Where(o => o.Target != disk.Target))
                        Assert.Equal(other, reread.Disk(other.Target));
                    Assert.DoesNotContain(DomainRules.Check(reread), v => v.Rule == DomainRule.DuplicateTarget);
                    AssertValid(edited);
                    if (bus == disk.Bus) Assert.Equal(domain.Text, edited.Text);
                }
        }
    }

    [Theory]
    [InlineData(DiskBus.Sata, 4, null, DomainRule.QueuesNeedVirtioBlk)]
    [InlineData(DiskBus.Sata, null, 1, DomainRule.IoThreadNeedsVirtioBlk)]
    [InlineData(DiskBus.Ide, null, null, DomainRule.IdeOnQ35)]
    public void WhatTheQemuDriverRefusesIsNamed(DiskBus bus, int? queues, int? ioThread, DomainRule rule)
    {
        var domain = Load("q35-sata-cdrom-network.xml");
        var edited = domain.WithBus("vda", bus, queues, ioThread, out string target);
        Assert.Contains(DomainRules.Check(edited), v => v.Target == target && v.Rule == rule);
        var error = Assert.Throws<VDiskException>(() => DomainRules.Ensure(edited, new[] { target }));
        Assert.Contains(rule.ToString(), error.Message);
    }
}
