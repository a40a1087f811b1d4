// Repair (Test-VDisk -Repair) under the power-loss simulator: a dirty lazy-refcount image with counts behind its L2
// tables, an image with leaked clusters, and one with a refcount forced to 0 under a live entry are repaired while
// every write and flush is recorded. Every crash image must still be repairable (a repair never makes an image
// worse), read exactly the guest content it had before, and come out clean from a second repair; qemu-img check
// agrees on a sample (all of them with VDISK_POWERLOSS_FULL=1).
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.PowerLoss;

public class RepairPowerLossTests
{
    private const int ClusterSize = 4096;
    private const long Size = 4 << 20;

    public static TheoryData<string> Damages => new() { "dirty lazy refcounts", "leaked clusters", "refcount 0 under a live entry" };

    [SkippableTheory]
    [MemberData(nameof(Damages))]
    public void EveryCrashImageOfARepairIsRepairableAndKeepsTheGuestData(string damage)
    {
        Qemu.Require();
        var failures = CrashRepair(damage, maxFailures: 5);
        Assert.True(failures.Count == 0, $"{damage}: {failures.Count} crash image(s) failed:\n{string.Join("\n", failures)}");
    }

    // The counts must be durable before the header clears the dirty bit that says they may be wrong.
    [SkippableFact]
    public void LeavingOutTheBarrierBeforeTheHeaderIsCaught()
    {
        Qemu.Require();
        using (Qcow2WriteOrder.SkipBarrierBefore(Qcow2HeaderUpdater.BarrierName))
            Assert.NotEmpty(CrashRepair("dirty lazy refcounts", maxFailures: 1, subsets: 12));
    }

    private static List<string> CrashRepair(string damage, int maxFailures, int? subsets = null)
    {
        var start = Damaged(damage);
        var before = Qcow2Check.Run(new MemoryStorage("r.qcow2", start, canWrite: false));
        Assert.False(before.IsClean && !before.Dirty, $"{damage}: the starting image should need a repair");
        var guest = GuestContent(start);

        var recorder = new PowerLossStorage(new MemoryStorage("r.qcow2", start));
        var (_, fixedCounts) = Qcow2Image.CheckAndRepair(recorder, repair: true, all: true);
        Assert.NotNull(fixedCounts);
        Assert.True(recorder.FlushCount >= 1, $"{damage}: the repair should flush");

        using var dir = new TempFolder();
        var failures = new List<string>();
        int n = 0, qemuEvery = CrashHarness.FullSweep ? 1 : 8;
        foreach (var crash in recorder.CrashImages(new Random(7), subsets ?? (CrashHarness.FullSweep ? 12 : 4)))
        {
            string? failure = VerifyOne(crash.Bytes, guest, before, n++ % qemuEvery == 0 ? dir : null);
            if (failure != null) failures.Add($"{crash.Description}: {failure}");
            if (failures.Count >= maxFailures) break;
        }
        Assert.True(n >= 4, $"{damage}: only {n} crash images");
        return failures;
    }

    // Never worse than before: still repairable, no new corruption on an image that was not dirty, the same guest data.
    private static string? VerifyOne(byte[] bytes, byte[] guest, Qcow2CheckReport before, TempFolder? qemuDir)
    {
        var report = Qcow2Check.Run(new MemoryStorage("r.qcow2", bytes, canWrite: false));
        if (report.Unrepairable.Count > 0) return $"not repairable any more: {string.Join("; ", report.Unrepairable)}";
        if (!before.Dirty && report.Corruptions > before.Corruptions)
            return $"{report.Corruptions} corruption(s), more than the {before.Corruptions} before the repair: {string.Join("; ", report.Problems.Take(3))}";
        if (before.Dirty && !report.Dirty && report.Corruptions > 0)
            return $"the dirty bit is clear but {report.Corruptions} corruption(s) remain: {string.Join("; ", report.Problems.Take(3))}";
        if (!GuestContent(bytes).AsSpan().SequenceEqual(guest)) return "the guest content changed";
        var storage = new MemoryStorage("r.qcow2", bytes);
        Qcow2Image.CheckAndRepair(storage, repair: true, all: true);
        var repaired = storage.ToArray();
        var after = Qcow2Check.Run(new MemoryStorage("r.qcow2", repaired, canWrite: false));
        if (!after.IsClean || after.Dirty) return $"a second repair left {after.Corruptions} corruption(s), {after.Leaks} leak(s), dirty {after.Dirty}";
        if (!GuestContent(repaired).AsSpan().SequenceEqual(guest)) return "the second repair changed the guest content";
        if (qemuDir is null) return null;
        string path = qemuDir.File("r.qcow2");
        if (!before.Dirty && before.Corruptions == 0)
        {
            File.WriteAllBytes(path, bytes);
            var (crashCode, crashOutput) = Qemu.TryImg("check", "-f", "qcow2", path);
            if (crashCode is not (0 or 3)) return $"qemu-img check of the crash image exited {crashCode}: {crashOutput}";
        }
        File.WriteAllBytes(path, repaired);
        var (code, output) = Qemu.TryImg("check", "-f", "qcow2", path);
        return code == 0 ? null : $"after a second repair qemu-img check exited {code}: {output}";
    }

    private static byte[] Damaged(string damage)
    {
        bool lazy = damage == "dirty lazy refcounts";
        var memory = new MemoryStorage("r.qcow2");
        Qcow2Creator.WriteEmpty(memory, new CreateOptions { Size = Size, ClusterSize = ClusterSize, LazyRefcounts = lazy }, Size, null, null);
        var recorder = new PowerLossStorage(memory);
        using (var disk = new VirtualDisk("r.qcow2", Qcow2Driver.Open(recorder, writable: true), null, writable: true))
        {
            var random = new Random(3);
            for (int i = 0; i < 24; i++)
            {
                disk.Write(random.Next(0, (int)(Size / ClusterSize) - 4) * (long)ClusterSize, CrashHarness.Pattern(3 * ClusterSize, i));
                if (i % 4 == 3) disk.Flush();
            }
        }
        if (damage == "refcount 0 under a live entry")
        {
            var bytes = memory.ToArray();
            var header = Qcow2Header.Parse(bytes.AsSpan(0, ClusterSize), "r.qcow2");
            long l2 = (long)(BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)header.L1TableOffset)) & Qcow2Entries.OffsetMask);
            long block = (long)BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)header.RefcountTableOffset));
            for (int i = 0; i < ClusterSize / 8; i++)
            {
                long data = (long)(BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan((int)l2 + i * 8)) & Qcow2Entries.OffsetMask);
                if (data == 0) continue;
                BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan((int)(block + 2 * (data / ClusterSize))), 0);
                return bytes;
            }
            throw new InvalidOperationException("no data cluster under the first L2 table");
        }
        foreach (var crash in recorder.CrashImages(new Random(9), 4))
        {
            var report = Qcow2Check.Run(new MemoryStorage("r.qcow2", crash.Bytes, canWrite: false));
            bool wanted = lazy ? report.Dirty && report.Corruptions > 0 : !report.Dirty && report.Corruptions == 0 && report.Leaks > 2;
            if (wanted && report.Unrepairable.Count == 0) return crash.Bytes;
        }
        throw new InvalidOperationException($"no crash image with {damage}");
    }

    private static byte[] GuestContent(byte[] bytes)
    {
        using var disk = new VirtualDisk("r.qcow2", Qcow2Driver.Open(new MemoryStorage("r.qcow2", bytes, canWrite: false), writable: false), null, writable: false);
        return Images.ReadAll(disk);
    }
}
