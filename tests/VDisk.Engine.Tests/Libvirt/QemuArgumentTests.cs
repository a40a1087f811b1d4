// QEMU arguments for a disk attachment (qemu-system "Block device options"): qemu-system-x86_64 itself accepts them
// (-S, no guest runs) and its query-block reports, for each cache mode, the flags libvirt's mapping gives
// (cache.direct, cache.no-flush, and writeback for a SCSI disk; virtio-blk's writeback follows the guest driver's
// feature negotiation, off until a guest driver runs, so it is not compared).
using System.Diagnostics;
using System.Text.Json;
using VDisk.Engine.Libvirt;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Libvirt;

public class QemuArgumentTests
{
    public static TheoryData<CacheMode, QemuArgumentStyle> Modes()
    {
        var data = new TheoryData<CacheMode, QemuArgumentStyle>();
        foreach (var mode in Enum.GetValues<CacheMode>())
            foreach (var style in Enum.GetValues<QemuArgumentStyle>()) data.Add(mode, style);
        return data;
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void QemuAcceptsTheArgumentsAndReportsTheModesFlags(CacheMode mode, QemuArgumentStyle style)
    {
        LibvirtTools.Require("qemu-system-x86_64", "qemu-img");
        using var folder = new TempFolder();
        string blk = folder.File("blk,1.qcow2"), scsi = folder.File("scsi.raw");
        Qemu.Img("create", "-q", "-f", "qcow2", blk, "16M");
        Qemu.Img("create", "-q", "-f", "raw", scsi, "16M");
        var io = mode is CacheMode.None or CacheMode.DirectSync ? DiskIoMode.Native : DiskIoMode.Threads;
        var disks = new[]
        {
            new DiskAttachment { Target = "vda", Bus = DiskBus.VirtioBlk, Path = blk, Format = "qcow2", CacheMode = mode, IoMode = io, Discard = "unmap", Queues = 2, IoThread = 1, BootOrder = 1 },
            new DiskAttachment { Target = "sda", Bus = DiskBus.VirtioScsi, Path = scsi, Format = "raw", CacheMode = mode },
        };
        var args = DiskDefinitions.QemuArguments(disks, style);
        var blocks = QueryBlock(args);
        Assert.Equal(2, blocks.Count);
        var expected = DiskDefinitions.CacheFlags(mode);
        foreach (var (qdev, cache, file) in blocks)
        {
            Assert.Equal(expected.Direct, cache.GetProperty("direct").GetBoolean());
            Assert.Equal(expected.NoFlush, cache.GetProperty("no-flush").GetBoolean());
            if (qdev.Contains("vdisk1")) Assert.Equal(expected.WriteBack, cache.GetProperty("writeback").GetBoolean());
            Assert.Contains(qdev.Contains("vdisk0") ? blk : scsi, file);
        }
    }

    [Fact]
    public void FlagsFollowLibvirtsMapping()
    {
        Assert.Equal((false, false, true), DiskDefinitions.CacheFlags(CacheMode.Writeback));
        Assert.Equal((true, false, true), DiskDefinitions.CacheFlags(CacheMode.None));
        Assert.Equal((false, false, false), DiskDefinitions.CacheFlags(CacheMode.Writethrough));
        Assert.Equal((true, false, false), DiskDefinitions.CacheFlags(CacheMode.DirectSync));
        Assert.Equal((false, true, true), DiskDefinitions.CacheFlags(CacheMode.Unsafe));
    }

    [Fact]
    public void LibvirtXmlOfANewDiskValidatesInADomain()
    {
        LibvirtTools.Require("virt-xml-validate", "xmllint");
        var disks = new[]
        {
            new DiskAttachment { Target = "vda", Bus = DiskBus.VirtioBlk, Path = "/images/a&b.qcow2", Format = "qcow2", CacheMode = CacheMode.None, IoMode = DiskIoMode.Native, Queues = 4, IoThread = 1, BootOrder = 1 },
            new DiskAttachment { Target = "sda", Bus = DiskBus.VirtioScsi, Path = "/dev/vg0/data", Format = "raw", CacheMode = CacheMode.Writeback, Discard = "unmap", ReadOnly = true },
        };
        string devices = string.Join("\n", disks.Select(DiskDefinitions.LibvirtXml));
        Assert.Contains("<controller type='scsi' index='0' model='virtio-scsi'/>", devices);
        Assert.Contains("<source dev='/dev/vg0/data'/>", devices);
        string xml = $"<domain type='qemu'><name>n</name><memory>262144</memory><iothreads>1</iothreads><os><type arch='x86_64' machine='pc'>hvm</type></os><devices>{devices}</devices></domain>";
        var (code, output) = LibvirtTools.Validate(xml);
        Assert.True(code == 0, output);
        var parsed = DomainXml.Parse(xml);
        Assert.Equal(disks.Select(d => d with { Domain = "n" }), parsed.Disks);
        Assert.Empty(DomainRules.Check(parsed));
    }

    // Starts QEMU paused with the arguments, asks query-block over QMP on stdio, quits; (qdev, cache, file) per device.
    private static List<(string Qdev, JsonElement Cache, string File)> QueryBlock(IReadOnlyList<string> args)
    {
        var start = new ProcessStartInfo("qemu-system-x86_64") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { "-S", "-machine", "pc,accel=tcg", "-display", "none", "-nodefaults", "-qmp", "stdio" }.Concat(args)) start.ArgumentList.Add(a);
        using var qemu = Process.Start(start)!;
        var errors = qemu.StandardError.ReadToEndAsync();
        qemu.StandardInput.WriteLine("{\"execute\":\"qmp_capabilities\"}");
        qemu.StandardInput.WriteLine("{\"execute\":\"query-block\"}");
        qemu.StandardInput.WriteLine("{\"execute\":\"quit\"}");
        qemu.StandardInput.Close();
        string output = qemu.StandardOutput.ReadToEnd();
        Assert.True(qemu.WaitForExit(30_000), "qemu did not quit");
        Assert.True(qemu.ExitCode == 0, $"qemu-system-x86_64 {string.Join(' ', args)} exited {qemu.ExitCode}: {errors.Result}");
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            using var doc = JsonDocument.Parse(line);
            if (doc.RootElement.TryGetProperty("return", out var ret) && ret.ValueKind == JsonValueKind.Array)
                return ret.EnumerateArray().Select(b => (b.GetProperty("qdev").GetString()!, b.GetProperty("inserted").GetProperty("cache").Clone(),
                    b.GetProperty("inserted").GetProperty("file").GetString()!)).ToList();
        }
        throw new InvalidOperationException($"no query-block answer: {output}");
    }
}
