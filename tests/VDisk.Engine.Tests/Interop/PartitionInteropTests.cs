// The partition reader against util-linux: disks partitioned by sfdisk (a DOS label with primaries, an extended
// partition and logicals; a GPT with names) holding real file systems (mkfs.ext4 -E offset, mkfs.vfat --offset, a
// mkswap area copied in), read raw, converted by qemu-img to qcow2, vmdk and vdi, and through a qcow2 overlay; every
// start, size, type, name and uuid must equal `sfdisk --json`'s and every file system blkid -p -O's. A GPT with its
// primary header damaged by sgdisk-style zeroing reads from the backup, as sfdisk does. Needs fdisk, e2fsprogs,
// dosfstools and qemu-utils: fails in CI without them (.ci/run installs them), skips elsewhere.
using System.Text.Json;
using VDisk.Engine.Partitions;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class PartitionInteropTests
{
    private const long DiskBytes = 96L << 20;

    private static void RequireTools()
    {
        Qemu.Require();
        string[] tools = { "sfdisk", "blkid", "mkfs.ext4", "mkfs.vfat", "mkswap" };
        var missing = tools.Where(t => !new[] { "/sbin", "/usr/sbin", "/bin", "/usr/bin" }.Any(d => File.Exists(Path.Combine(d, t)))).ToList();
        if (missing.Count == 0) return;
        if (Qemu.InCi) Assert.Fail($"{string.Join(", ", missing)} not installed, and CI=true: install fdisk, e2fsprogs, dosfstools (.ci/run does).");
        Skip.If(true, $"{string.Join(", ", missing)} not installed: partition interop skipped.");
    }

    private static string Sh(string script) => HostSetup.Run("sh", "-c", script);

    private static void Swap(string disk, long offset, long bytes, string dir)
    {
        string swap = Path.Combine(dir, "swap.bin");
        Sh($"truncate -s {bytes} '{swap}' && mkswap -q '{swap}' && dd if='{swap}' of='{disk}' bs=512 seek={offset / 512} conv=notrunc status=none");
    }

    private static string BuildDos(TempFolder dir)
    {
        string disk = dir.File("dos.raw");
        Sh($"truncate -s {DiskBytes} '{disk}'");
        HostSetup.Run("sh", "-c", $"printf 'label: dos\\nstart=2048, size=40960, type=83, bootable\\nstart=43008, size=20480, type=c\\n"
            + $"start=63488, size=122880, type=5\\nstart=65536, size=8192, type=82\\nstart=75776, size=40960, type=83\\nstart=118784, size=20480, type=8e\\n' | sfdisk -q '{disk}'");
        Sh($"mkfs.ext4 -q -F -E offset={2048 * 512} '{disk}' 20M");
        Sh($"mkfs.vfat --offset 43008 '{disk}' 10240 >/dev/null");
        Swap(disk, 65536L * 512, 4L << 20, dir.Path);
        Sh($"mkfs.ext4 -q -F -O ^has_journal -E offset={75776L * 512} '{disk}' 20M"); // ext2-like features: no journal
        return disk;
    }

    private static string BuildGpt(TempFolder dir)
    {
        string disk = dir.File("gpt.raw");
        string tree = dir.File("tree");
        Directory.CreateDirectory(tree);
        File.WriteAllText(Path.Combine(tree, "hello.txt"), "hello");
        Sh($"truncate -s {DiskBytes} '{disk}'");
        HostSetup.Run("sh", "-c", "printf 'label: gpt\\nstart=2048, size=65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI System Partition\"\\n"
            + "start=67584, size=4096, type=21686148-6449-6E6F-744E-656564454649, name=\"bios\"\\n"
            + "start=71680, size=61440, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root fs\"\\n"
            + $"start=133120, size=8192, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, name=\"swap\"\\n' | sfdisk -q '{disk}'");
        Sh($"mkfs.vfat -F 32 --offset 2048 '{disk}' 32768 >/dev/null");
        Sh($"mkfs.ext4 -q -F -d '{tree}' -E offset={71680L * 512} '{disk}' 30M");
        Swap(disk, 133120L * 512, 4L << 20, dir.Path);
        return disk;
    }

    /// <summary>What blkid calls the file system the reader names (vfat carries the FAT version).</summary>
    private static string BlkidType(string disk, long offset)
    {
        var (code, output) = HostSetup.TryRun("blkid", "-p", "-O", offset.ToString(), "-o", "export", disk);
        if (code != 0) return "unknown";
        var fields = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('=', 2)).Where(f => f.Length == 2).ToDictionary(f => f[0], f => f[1]);
        if (!fields.TryGetValue("TYPE", out var type)) return "unknown";
        return type switch { "vfat" => fields["VERSION"].ToLowerInvariant(), "LVM2_member" => "lvm2", "crypto_LUKS" => "luks", _ => type };
    }

    private static void AssertMatchesSfdisk(string raw, PartitionTable table)
    {
        using var json = JsonDocument.Parse(Sh($"sfdisk --json '{raw}' 2>/dev/null")); // stdout only: sfdisk warns on stderr
        var pt = json.RootElement.GetProperty("partitiontable");
        var expected = pt.GetProperty("partitions").EnumerateArray().ToList();
        Assert.Equal(expected.Count, table.Partitions.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            var e = expected[i];
            var p = table.Partitions[i];
            string node = e.GetProperty("node").GetString()!;
            Assert.Equal(int.Parse(node[raw.Length..]), p.Number);
            Assert.Equal(e.GetProperty("start").GetInt64() * 512, p.Start);
            Assert.Equal(e.GetProperty("size").GetInt64() * 512, p.Size);
            if (pt.GetProperty("label").GetString() == "gpt")
            {
                Assert.Equal(e.GetProperty("type").GetString(), p.Type);
                Assert.Equal(e.GetProperty("uuid").GetString(), p.PartitionGuid!.Value.ToString("D").ToUpperInvariant());
                Assert.Equal(e.GetProperty("name").GetString(), p.Name);
                Assert.Equal(pt.GetProperty("id").GetString(), table.DiskId);
            }
            else
            {
                Assert.Equal(Convert.ToByte(e.GetProperty("type").GetString(), 16), p.MbrType);
                Assert.Equal(e.TryGetProperty("bootable", out var boot) && boot.GetBoolean(), p.Bootable);
                Assert.Equal(pt.GetProperty("id").GetString(), table.DiskId);
            }
            Assert.Null(p.Problem);
            if (!p.IsExtended) Assert.Equal(BlkidType(raw, p.Start), p.FileSystem.Name);
        }
    }

    [SkippableTheory]
    [InlineData("dos")]
    [InlineData("gpt")]
    public void MatchesSfdiskAndBlkidInEveryFormatAndThroughAnOverlay(string label)
    {
        RequireTools();
        using var dir = new TempFolder();
        string raw = label == "dos" ? BuildDos(dir) : BuildGpt(dir);
        var table = PartitionReader.ReadImage(raw);
        Assert.Empty(table.Problems);
        AssertMatchesSfdisk(raw, table);
        var fileSystems = table.Partitions.Select(p => p.FileSystem.Name).ToList();
        if (label == "dos")
        {
            Assert.Equal(new[] { "ext4", "fat16", "unknown", "swap", "ext4", "unknown" }, fileSystems);
            Assert.DoesNotContain("has_journal", table.Partitions[4].FileSystem.Details);
            Assert.Equal(new[] { 1, 2, 3, 5, 6, 7 }, table.Partitions.Select(p => p.Number));
        }
        else
        {
            Assert.Equal(new[] { "fat32", "unknown", "ext4", "swap" }, fileSystems);
            Assert.Equal(new[] { "EFI System", "BIOS boot", "Linux filesystem", "Linux swap" }, table.Partitions.Select(p => p.TypeName));
        }
        foreach (var (format, options) in new[] { ("qcow2", ""), ("vmdk", "subformat=monolithicSparse"), ("vdi", "") })
        {
            string converted = dir.File($"disk.{format}");
            if (options == "") Qemu.Img("convert", "-q", "-O", format, raw, converted);
            else Qemu.Img("convert", "-q", "-O", format, "-o", options, raw, converted);
            Assert.Equal(table.Partitions, PartitionReader.ReadImage(converted).Partitions);
        }
        string overlay = dir.File("overlay.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", dir.File("disk.qcow2"), "-F", "qcow2", overlay);
        Assert.Equal(table.Partitions, PartitionReader.ReadImage(overlay).Partitions);
    }

    [SkippableFact]
    public void DamagedPrimaryGptReadsFromTheBackupLikeSfdisk()
    {
        RequireTools();
        using var dir = new TempFolder();
        string raw = BuildGpt(dir);
        var intact = PartitionReader.ReadImage(raw);
        Sh($"printf 'XXXX' | dd of='{raw}' bs=1 seek={512 + 40} conv=notrunc status=none"); // FirstUsableLBA: header CRC now wrong
        var table = PartitionReader.ReadImage(raw);
        Assert.Equal(GptHeaderUsed.Backup, table.Header);
        Assert.Equal(intact.Partitions, table.Partitions);
        AssertMatchesSfdisk(raw, table); // sfdisk also falls back to the backup header
        Sh($"dd if=/dev/zero of='{raw}' bs=512 seek={DiskBytes / 512 - 1} count=1 conv=notrunc status=none");
        var e = Assert.Throws<VDisk.Engine.Core.VDiskException>(() => PartitionReader.ReadImage(raw));
        Assert.Equal(VDisk.Engine.Core.VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains(raw, e.Message);
    }
}
