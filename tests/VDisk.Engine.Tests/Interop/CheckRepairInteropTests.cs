// Check and repair beside qemu-img check: a corpus of damaged qcow2 images made here (leaked clusters from a simulated
// crash, a refcount forced to 0 under a live L2 entry, an L2 entry past the end of the file, the L1 table laid over the
// refcount table, a lazy-refcount image left dirty by a killed qemu-io) and healthy ones (compressed, with a snapshot).
// For each, VDisk's findings must match `qemu-img check --output=json` number for number; a repair (-r all) must leave
// an image both tools call clean, with the guest data unchanged (sha256 of qemu-img convert -O raw), or, when the
// damage cannot be repaired safely, refuse and leave the file byte for byte as it was.
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.PowerLoss;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class CheckRepairInteropTests
{
    private const long Cluster = 65536;

    public static TheoryData<string, bool> Corpus => new()
    {
        { "leaks from a crash", true },
        { "refcount 0 under a live L2 entry", true },
        { "lazy refcounts left dirty", true },
        { "L2 entry past the end of the file", false },
        { "L1 table over the refcount table", false },
        { "healthy with compressed clusters and a snapshot", true },
    };

    [SkippableTheory]
    [MemberData(nameof(Corpus))]
    public void FindingsMatchQemuAndRepairLeavesBothToolsClean(string damage, bool repairable)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = Make(dir, damage);
        string guestBefore = GuestHash(dir, path);
        var qemu = QemuCheck(path);
        var ours = CheckImage.Run(path);
        AssertSameFindings(qemu, ours, damage);
        Assert.Equal(damage == "healthy with compressed clusters and a snapshot", ours.IsHealthy);

        string fileBefore = FileHash(path);
        var repaired = CheckImage.Run(path, RepairMode.All);
        if (!repairable)
        {
            Assert.True(repaired.RepairRefused, $"{damage}: the repair should have been refused");
            Assert.NotEmpty(repaired.Unrepairable);
            Assert.Equal(fileBefore, FileHash(path)); // nothing written
            return;
        }
        Assert.False(repaired.RepairRefused, $"{damage}: refused: {string.Join("; ", repaired.Unrepairable)}");
        Assert.True(repaired.IsHealthy, $"{damage}: after repair {repaired.Corruptions} corruption(s), {repaired.Leaks} leak(s): {string.Join("; ", repaired.Problems)}");
        Assert.Equal(ours.Leaks, repaired.LeaksFixed);
        var after = QemuCheck(path);
        Assert.True(after.Code == 0, $"{damage}: qemu-img check after our repair exited {after.Code}: {after.Output}");
        AssertSameFindings(after, CheckImage.Run(path), damage + " (repaired)");
        Assert.Equal(guestBefore, GuestHash(dir, path));
        using (var disk = Images.OpenWritable(path)) disk.Write(0, new byte[512]); // accepted for writing again
        Qemu.CheckClean(path);
    }

    [SkippableFact]
    public void RepairLeaksOnlyLeavesLowRefcountsAndTheDirtyBit()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = Make(dir, "lazy refcounts left dirty");
        var before = CheckImage.Run(path);
        Assert.True(before.Dirty && before.Corruptions > 0);
        var result = CheckImage.Run(path, RepairMode.Leaks);
        Assert.Equal(0, result.CorruptionsFixed);
        Assert.Equal(before.Corruptions, result.Corruptions);
        Assert.True(result.Dirty);
        var e = Assert.Throws<VDiskException>(() => Images.OpenWritable(path));
        Assert.Contains("Test-VDisk -Repair All", e.Message);
    }

    [SkippableFact]
    public void RepairOfACleanImageWritesNothing()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = Make(dir, "healthy with compressed clusters and a snapshot");
        string before = FileHash(path);
        var result = CheckImage.Run(path, RepairMode.All);
        Assert.True(result.IsHealthy);
        Assert.Equal((0L, 0L), (result.LeaksFixed, result.CorruptionsFixed));
        Assert.Equal(before, FileHash(path));
    }

    /// <summary>Makes the damaged (or healthy) image named <paramref name="damage"/> in <paramref name="dir"/>.</summary>
    internal static string Make(TempFolder dir, string damage)
    {
        string path = dir.File("image.qcow2");
        if (damage == "leaks from a crash")
        {
            File.WriteAllBytes(path, LeakyCrashImage());
            return path;
        }
        if (damage == "lazy refcounts left dirty")
        {
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", path, "64M");
            // With lazy refcounts qemu flushes L2 tables but not counts; abort() then leaves the image dirty.
            HostSetup.TryRun("qemu-io", "-t", "writeback", "-c", "write -P 0xab 0 1M", "-c", "write -P 0xcd 8M 256k", "-c", "flush",
                "-c", "write -P 0xef 16M 64k", "-c", "abort", path);
            Assert.True(Qcow2Header.Parse(File.ReadAllBytes(path).AsSpan(0, 4096), path).IsDirty, "qemu-io abort should leave the image dirty");
            return path;
        }
        Qemu.Img("create", "-q", "-f", "qcow2", path, "64M");
        Qemu.Io("-t", "writeback", "-c", "write -P 0xab 0 1M", "-c", "write -P 0xcd 8M 256k", "-c", "write -c -P 0x11 32M 128k", path);
        var bytes = File.ReadAllBytes(path);
        var header = Qcow2Header.Parse(bytes.AsSpan(0, 4096), path);
        long l2 = (long)(BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)header.L1TableOffset)) & Qcow2Entries.OffsetMask);
        long block = (long)BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)header.RefcountTableOffset));
        long firstData = (long)(BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)l2)) & Qcow2Entries.OffsetMask);
        switch (damage)
        {
            case "refcount 0 under a live L2 entry":
                BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan((int)(block + 2 * (firstData / Cluster))), 0);
                break;
            case "L2 entry past the end of the file":
                BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((int)l2), (1UL << 40) | Qcow2Entries.Copied);
                break;
            case "L1 table over the refcount table":
                BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(Qcow2Header.L1TableOffsetOffset), (ulong)header.RefcountTableOffset);
                break;
            case "healthy with compressed clusters and a snapshot":
                File.WriteAllBytes(path, bytes);
                Qemu.Img("snapshot", "-c", "s1", path);
                Qemu.Io("-t", "writeback", "-c", "write -P 0x22 0 192k", "-c", "write -P 0x33 40M 64k", path);
                return path;
            default:
                throw new ArgumentException(damage);
        }
        File.WriteAllBytes(path, bytes);
        return path;
    }

    // Allocating writes recorded by the power-loss simulator; the first crash image that has leaked clusters and is
    // otherwise consistent (counts are made durable before the L2 entries that use them, so crashes leak).
    private static byte[] LeakyCrashImage()
    {
        var memory = new MemoryStorage("leaky.qcow2");
        Qcow2Creator.WriteEmpty(memory, new CreateOptions { Size = 16 << 20 }, 16 << 20, null, null);
        var recorder = new PowerLossStorage(memory);
        using (var disk = new VirtualDisk("leaky.qcow2", Qcow2Driver.Open(recorder, writable: true), null, writable: true))
        {
            for (int i = 0; i < 8; i++)
            {
                disk.Write(i * 3L * Cluster, CrashHarness.Pattern(2 * (int)Cluster, i));
                disk.Flush();
            }
        }
        foreach (var crash in recorder.CrashImages(new Random(5), 4))
        {
            var report = Qcow2Check.Run(new MemoryStorage("leaky.qcow2", crash.Bytes, canWrite: false));
            if (report.Leaks > 0 && report.Corruptions == 0 && !report.Dirty) return crash.Bytes;
        }
        throw new InvalidOperationException("no crash image leaked clusters");
    }

    internal static (int Code, JsonElement Json, string Output) QemuCheck(string path, string format = "qcow2")
    {
        var (code, output) = Qemu.TryImg("check", "--output=json", "-f", format, path);
        int start = output.IndexOf('{'), end = start < 0 ? -1 : output.IndexOf("\n}", start, StringComparison.Ordinal);
        Assert.True(start >= 0 && end > start, $"qemu-img check printed no JSON: {output}");
        using var doc = JsonDocument.Parse(output[start..(end + 2)]);
        return (code, doc.RootElement.Clone(), output);
    }

    private static void AssertSameFindings((int Code, JsonElement Json, string Output) qemu, CheckResult ours, string what)
    {
        long Q(string name) => qemu.Json.TryGetProperty(name, out var v) ? v.GetInt64() : 0;
        var expected = new[]
        {
            ("corruptions", Q("corruptions")), ("leaks", Q("leaks")), ("check-errors", Q("check-errors")),
            ("image-end-offset", Q("image-end-offset")), ("total-clusters", Q("total-clusters")),
            ("allocated-clusters", Q("allocated-clusters")), ("fragmented-clusters", Q("fragmented-clusters")),
            ("compressed-clusters", Q("compressed-clusters")),
        };
        var actual = new[]
        {
            ("corruptions", ours.Corruptions), ("leaks", ours.Leaks), ("check-errors", ours.CheckErrors),
            ("image-end-offset", ours.ImageEndOffset ?? -1), ("total-clusters", ours.TotalClusters ?? -1),
            ("allocated-clusters", ours.AllocatedClusters ?? -1), ("fragmented-clusters", ours.FragmentedClusters ?? -1),
            ("compressed-clusters", ours.CompressedClusters ?? -1),
        };
        Assert.True(expected.SequenceEqual(actual), $"{what}: qemu-img check says {string.Join(", ", expected)}\nVDisk says {string.Join(", ", actual)}\n{qemu.Output}\nVDisk's problems: {string.Join("; ", ours.Problems)}");
    }

    private static string GuestHash(TempFolder dir, string path)
    {
        string raw = dir.File("guest.raw");
        Qemu.Img("convert", "-U", "-f", "qcow2", "-O", "raw", path, raw);
        string hash = FileHash(raw);
        File.Delete(raw);
        return hash;
    }

    private static string FileHash(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));
}
