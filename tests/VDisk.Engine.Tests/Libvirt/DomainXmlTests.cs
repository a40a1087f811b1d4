// Domain XML model and in-place edits (libvirt formatdomain "Hard drives, floppy disks, CDROMs"): the corpus comes back
// byte-identical when nothing is set; an edit changes only the attributes it sets; every output passes
// virt-xml-validate when its input did; the QEMU driver's rules are reported by name.
using VDisk.Engine.Core;
using VDisk.Engine.Libvirt;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Libvirt;

public class DomainXmlTests
{
    private static readonly string CorpusFolder = Path.Combine(AppContext.BaseDirectory, "Libvirt", "Corpus");

    private static string[] CorpusNames() => Directory.GetFiles(CorpusFolder, "*.xml").Order().Select(f => Path.GetFileName(f)).ToArray();

    public static TheoryData<string> Corpus() => new(CorpusNames());

    private static string Read(string name) => File.ReadAllText(Path.Combine(CorpusFolder, name));

    private static bool SchemaValid(string name) => !name.Contains("schema-invalid", StringComparison.Ordinal);

    [Fact]
    public void CorpusHasSeveralDeviceMixes() => Assert.True(CorpusNames().Length >= 5);

    [Theory]
    [MemberData(nameof(Corpus))]
    public void RoundTripIsByteIdenticalWhenNothingIsSet(string name)
    {
        string text = Read(name);
        var domain = DomainXml.Parse(text, name);
        Assert.NotEmpty(domain.Disks);
        Assert.Equal(text, domain.Text);
        var unchanged = domain.WithCache(domain.Disks[0].Target, null, null);
        Assert.Equal(text, unchanged.Text);
        // Setting a disk's attributes to the values they already hold also changes no byte.
        var disk = domain.Disks[0];
        if (disk.CacheMode is { } cache)
            Assert.Equal(text, domain.WithCache(disk.Target, cache, disk.IoMode).Text);
    }

    [Theory]
    [MemberData(nameof(Corpus))]
    public void EveryCacheModeEditChangesOnlyThatAttribute(string name)
    {
        string text = Read(name);
        var domain = DomainXml.Parse(text, name);
        foreach (var disk in domain.Disks)
        {
            foreach (var mode in Enum.GetValues<CacheMode>())
            {
                var io = mode is CacheMode.None or CacheMode.DirectSync ? disk.IoMode : disk.IoMode == DiskIoMode.Native ? DiskIoMode.Threads : disk.IoMode;
                var edited = domain.WithCache(disk.Target, mode, io);
                var reread = DomainXml.Parse(edited.Text);
                Assert.Equal(mode, reread.Disk(disk.Target).CacheMode);
                // Every other disk, and every other property of this one, reads as before.
                foreach (var other in domain.Disks)
                {
                    var after = reread.Disk(other.Target);
                    Assert.Equal(other.Target == disk.Target ? other with { CacheMode = mode, IoMode = io } : other, after);
                }
                // Only the lines of this disk's driver changed (or one driver line was added).
                var diff = LineDiff.Compare(text, edited.Text);
                Assert.InRange(diff.Count, 0, 2);
                Assert.All(diff, line => Assert.Contains("<driver", line));
                Assert.DoesNotContain(DomainRules.Check(reread), v => v.Target == disk.Target && v.Rule == DomainRule.NativeIoNeedsDirectCache);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Corpus))]
    public void EditedOutputsPassVirtXmlValidate(string name)
    {
        LibvirtTools.Require("virt-xml-validate", "xmllint");
        string text = Read(name);
        var (inputCode, inputOutput) = LibvirtTools.Validate(text);
        Assert.True(SchemaValid(name) == (inputCode == 0), inputOutput);
        var domain = DomainXml.Parse(text, name);
        foreach (var disk in domain.Disks)
        {
            var edited = domain.WithCache(disk.Target, CacheMode.DirectSync, DiskIoMode.Native);
            var (code, output) = LibvirtTools.Validate(edited.Text);
            Assert.True(SchemaValid(name) == (code == 0), $"{name}, {disk.Target}: {output}\n{edited.Text}");
        }
    }

    [Fact]
    public void KeepsQuotesEntitiesCommentsAndAttributeOrder()
    {
        string text = Read("hand-written-comments-quotes.xml");
        var domain = DomainXml.Parse(text);
        var edited = domain.WithCache("vda", CacheMode.None, DiskIoMode.Native).Text;
        Assert.Contains("<driver name=\"qemu\" type=\"qcow2\"   cache=\"none\" iothread=\"1\" queues=\"4\" io=\"native\"/>", edited);
        Assert.Equal(text.Replace("cache=\"unsafe\" iothread=\"1\" queues=\"4\"/>", "cache=\"none\" iothread=\"1\" queues=\"4\" io=\"native\"/>"), edited);
        Assert.Equal("/srv/vms/web01 & co.qcow2", domain.Disk("vda").Path);
    }

    [Fact]
    public void KeepsUnknownElementsAndAttributes()
    {
        string text = Read("unknown-elements.schema-invalid.xml");
        var edited = DomainXml.Parse(text).WithCache("vda", CacheMode.Writethrough, null).Text;
        Assert.Equal(text.Replace("cache=\"unsafe\"", "cache=\"writethrough\""), edited);
    }

    [Fact]
    public void ADiskWithoutDriverGetsOneIndentedLikeItsChildren()
    {
        string text = Read("hand-written-comments-quotes.xml");
        var edited = DomainXml.Parse(text).WithCache("vdb", CacheMode.None, null);
        Assert.Equal(text.Replace("<disk type=\"file\" device=\"disk\">\n\t\t\t<source file=\"/srv/vms/web01-data.raw\"/>",
            "<disk type=\"file\" device=\"disk\">\n\t\t\t<driver name='qemu' cache='none'/>\n\t\t\t<source file=\"/srv/vms/web01-data.raw\"/>"), edited.Text);
        Assert.Equal(CacheMode.None, edited.Disk("vdb").CacheMode);
        Assert.Null(edited.Disk("vdb").Format);
    }

    [Fact]
    public void CrLfDocumentsKeepTheirLineEndings()
    {
        string text = Read("crlf-virtio-scsi-iothreadids.xml");
        Assert.Contains("\r\n", text);
        var edited = DomainXml.Parse(text).WithCache("sdb", CacheMode.Unsafe, null).Text;
        Assert.Equal(text.Replace("type=\"raw\" cache=\"writethrough\"", "type=\"raw\" cache=\"unsafe\""), edited);
    }

    [Fact]
    public void ReadsEveryDiskProperty()
    {
        var q35 = DomainXml.Parse(Read("q35-sata-cdrom-network.xml"));
        Assert.Equal("db01", q35.Name);
        Assert.True(q35.IsQ35);
        Assert.Equal(new[] { "sda", "sdb", "sdc", "vda" }, q35.Disks.Select(d => d.Target));
        var sda = q35.Disk("sda");
        Assert.Equal((DiskBus.Sata, "qcow2", CacheMode.Writeback, "unmap", 1), (sda.Bus, sda.Format, sda.CacheMode, sda.Discard, sda.BootOrder));
        var cdrom = q35.Disk("sdb");
        Assert.Equal(("cdrom", true, (string?)null), (cdrom.Device, cdrom.ReadOnly, cdrom.Path));
        Assert.Equal(("export0", DiskIoMode.Native), (q35.Disk("sdc").Path, q35.Disk("sdc").IoMode));
        Assert.Equal(("/dev/vg0/db01-data", CacheMode.DirectSync), (q35.Disk("vda").Path, q35.Disk("vda").CacheMode));

        var crlf = DomainXml.Parse(Read("crlf-virtio-scsi-iothreadids.xml"));
        Assert.Equal(new[] { 4, 8 }, crlf.IoThreadIds);
        Assert.Equal((DiskBus.VirtioBlk, (int?)8), (crlf.Disk("vda").Bus, crlf.Disk("vda").IoThread));
        Assert.Equal(DiskBus.VirtioScsi, crlf.Disk("sda").Bus);
        Assert.Equal(DiskBus.Scsi, crlf.Disk("sdb").Bus); // controller 1 has no model: libvirt makes it lsilogic

        var web = DomainXml.Parse(Read("hand-written-comments-quotes.xml"));
        Assert.Equal(new[] { 1, 2 }, web.IoThreadIds);
        var vda = web.Disk("vda");
        Assert.Equal((CacheMode.Unsafe, (int?)4, (int?)1), (vda.CacheMode, vda.Queues, vda.IoThread));
        Assert.Equal((DiskBus.Ide, DiskIoMode.Threads, "ignore"), (web.Disk("hda").Bus, web.Disk("hda").IoMode, web.Disk("hda").Discard));
        Assert.Null(web.Disk("vdb").CacheMode);
    }

    [Fact]
    public void EveryCorpusDomainKeepsTheRules()
    {
        foreach (var name in CorpusNames()) Assert.Empty(DomainRules.Check(DomainXml.Parse(Read(name))));
    }

    public static TheoryData<string, string, string, DomainRule> Violations() => new()
    {
        { "i440fx-virtio-blk-and-scsi.xml", "cache='none' io='native'", "cache='writeback' io='native'", DomainRule.NativeIoNeedsDirectCache },
        { "i440fx-virtio-blk-and-scsi.xml", "cache='none' io='native'", "io='native'", DomainRule.NativeIoNeedsDirectCache },
        { "i440fx-virtio-blk-and-scsi.xml", "type='qcow2'/>", "type='qcow2' iothread='1'/>", DomainRule.IoThreadNeedsVirtioBlk },
        { "q35-sata-cdrom-network.xml", "cache='writeback' discard='unmap'", "iothread='1'", DomainRule.IoThreadNeedsVirtioBlk },
        { "i440fx-virtio-blk-and-scsi.xml", "cache='none' io='native'", "cache='none' iothread='2'", DomainRule.IoThreadNotDefined },
        { "crlf-virtio-scsi-iothreadids.xml", "iothread=\"8\"", "iothread=\"5\"", DomainRule.IoThreadNotDefined },
        { "i440fx-virtio-blk-and-scsi.xml", "type='qcow2'/>", "type='qcow2' queues='2'/>", DomainRule.QueuesNeedVirtioBlk },
        { "i440fx-virtio-blk-and-scsi.xml", "dev='sda'", "dev='vda'", DomainRule.DuplicateTarget },
        { "hand-written-comments-quotes.xml", "machine=\"pc\"", "machine=\"q35\"", DomainRule.IdeOnQ35 },
    };

    [Theory]
    [MemberData(nameof(Violations))]
    public void RefusesWhatTheQemuDriverRefusesNamingTheRule(string name, string from, string to, DomainRule rule)
    {
        string text = Read(name);
        Assert.Contains(from, text);
        var domain = DomainXml.Parse(text.Replace(from, to), name);
        Assert.Contains(rule, DomainRules.Check(domain).Select(v => v.Rule));
        var e = Assert.Throws<VDiskException>(() => DomainRules.Ensure(domain));
        Assert.Equal(VDiskErrorKind.DomainRuleViolated, e.Kind);
        Assert.Contains($"[{rule}]", e.Message);
    }

    [Fact]
    public void AnEditThatBreaksARuleIsCaughtForThatDisk()
    {
        var domain = DomainXml.Parse(Read("i440fx-virtio-blk-and-scsi.xml"));
        var edited = domain.WithCache("vda", CacheMode.Writeback, null); // io='native' stays
        var e = Assert.Throws<VDiskException>(() => DomainRules.Ensure(edited, new[] { "vda" }));
        Assert.Contains("[NativeIoNeedsDirectCache]", e.Message);
        Assert.Contains("-IoMode Threads", e.Message);
        DomainRules.Ensure(edited, new[] { "sda" });
    }

    [Fact]
    public void UnknownTargetsAndBadDocumentsAreErrors()
    {
        var domain = DomainXml.Parse(Read("i440fx-virtio-blk-and-scsi.xml"), "dom.xml");
        var e = Assert.Throws<VDiskException>(() => domain.WithCache("vdz", CacheMode.None, null));
        Assert.Equal(VDiskErrorKind.DiskNotFound, e.Kind);
        Assert.Contains("vda, sda", e.Message);
        Assert.Equal(VDiskErrorKind.InvalidDomainXml, Assert.Throws<VDiskException>(() => DomainXml.Parse("<domain>", "x")).Kind);
        Assert.Equal(VDiskErrorKind.InvalidDomainXml, Assert.Throws<VDiskException>(() => DomainXml.Parse("<network/>", "x")).Kind);
        Assert.Equal(VDiskErrorKind.InvalidDomainXml,
            Assert.Throws<VDiskException>(() => DomainXml.Parse("<domain><devices><disk><driver cache='fast'/></disk></devices></domain>", "x")).Kind);
    }

    [Fact]
    public void LineDiffShowsRemovedThenAddedLines()
    {
        Assert.Equal(new[] { "- b", "+ B", "+ c2" }, LineDiff.Compare("a\nb\nc", "a\nB\nc2\nc"));
        Assert.Empty(LineDiff.Compare("a\nb", "a\nb"));
    }
}
