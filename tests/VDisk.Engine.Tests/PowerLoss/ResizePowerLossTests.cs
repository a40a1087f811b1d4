// Resize under the power-loss simulator (issue 9 "Crash safety"): a qcow2 grow that moves the L1 table, a grow with
// preallocation and a shrink that frees clusters and L2 tables, crashed at every point (a sample of write subsets per
// point in CI). Every crash image must open, pass our reference check and, on a sample, qemu-img check (leaks allowed),
// have the old or the new size, read the guest content below the smaller size unchanged and, at the new size, zeroes
// past the old end. Leaving out the barrier
// before the header makes some crash image fail, so the test cannot go blind to it.
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.PowerLoss;

public class ResizePowerLossTests
{
    [SkippableTheory]
    [InlineData(512, 1L << 20, 8L << 20, Preallocation.Off)]        // 32 L1 entries to 256: the table moves
    [InlineData(4096, 2L << 20, 3L << 20, Preallocation.Full)]     // new clusters allocated, zeroed and linked
    [InlineData(4096, 2L << 20, 3L << 20, Preallocation.Metadata)]
    [InlineData(4096, (2L << 20) + 1024, 5L << 20, Preallocation.Off)] // the old last cluster's tail zeroed, the L1 table grown in place
    [InlineData(4096, 4L << 20, (1L << 20) + 1024, Preallocation.Off)] // shrink: clusters and L2 tables freed, file trimmed
    public void EveryCrashLeavesTheOldOrNewSizeWithTheDataBelowTheSmaller(int clusterSize, long old, long size, Preallocation prealloc)
    {
        Qemu.Require();
        var failures = Run(clusterSize, old, size, prealloc, maxFailures: 5);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    // The new L1 table (and everything else) must be durable before the header points at it.
    [SkippableFact]
    public void LeavingOutTheBarrierBeforeTheHeaderIsCaught()
    {
        Qemu.Require();
        using (Qcow2WriteOrder.SkipBarrierBefore(Qcow2HeaderUpdater.BarrierName))
            Assert.NotEmpty(Run(512, 1L << 20, 8L << 20, Preallocation.Off, maxFailures: 1));
    }

    private static List<string> Run(int clusterSize, long old, long size, Preallocation prealloc, int maxFailures)
    {
        using var dir = new TempFolder();
        string path = dir.File("r.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", path, old.ToString());
        ChainImages.Scatter(path, "qcow2", seed: clusterSize, writes: 24, old, zeroes: true);
        byte[] before;
        using (var disk = Images.OpenReadOnly(path)) before = Images.ReadAll(disk);
        long kept = Math.Min(old, size);

        var files = ChainCrashHarness.Record(dir.Path, () =>
            ResizeImage.Run(path, new ResizeOptions { Size = size, Shrink = size < old, Preallocation = prealloc }));

        using (var disk = Images.OpenReadOnly(path)) Assert.Equal(size, disk.Length);
        var recorder = Assert.Single(files).Recorder;
        Assert.True(recorder.FlushCount >= 2, $"the resize should flush several times (did {recorder.FlushCount})");
        using var scratch = new TempFolder();
        var failures = new List<string>();
        int n = 0;
        foreach (var crash in recorder.CrashImages(new Random(clusterSize), CrashHarness.FullSweep ? 12 : 4))
        {
            string? failure = Check(crash.Bytes, old, size, before.AsSpan(0, (int)kept));
            if (failure is null && n % (CrashHarness.FullSweep ? 1 : 8) == 0)
                failure = CrashHarness.QemuCheckProblem(scratch, crash.Bytes);
            n++;
            if (failure != null) failures.Add($"{crash.Description}: {failure}");
            if (failures.Count >= maxFailures) break;
        }
        Assert.True(n > 10 || failures.Count > 0, $"only {n} crash images");
        return failures;
    }

    private static string? Check(byte[] bytes, long old, long size, ReadOnlySpan<byte> expected)
    {
        try
        {
            (string? failure, bytes) = Qcow2Consistency.Check("crash.qcow2", bytes);
            if (failure != null) return failure;
            using var disk = new VirtualDisk("crash.qcow2", Qcow2Driver.Open(new MemoryStorage("crash.qcow2", bytes, canWrite: false), false), null, false);
            if (disk.Length != old && disk.Length != size) return $"the size is {disk.Length}, neither {old} nor {size}";
            var actual = new byte[expected.Length];
            disk.Read(0, actual);
            int at = actual.AsSpan().CommonPrefixLength(expected);
            if (at != expected.Length) return $"guest byte {at} reads 0x{actual[at]:x2}, not 0x{expected[at]:x2}";
            if (disk.Length <= old) return null;
            var grown = new byte[disk.Length - old];
            disk.Read(old, grown);
            int stale = grown.AsSpan().IndexOfAnyExcept((byte)0);
            return stale < 0 ? null : $"the new area reads 0x{grown[stale]:x2} at guest byte {old + stale}, not zero";
        }
        catch (VDiskException e)
        {
            return $"does not read: {e.Message}";
        }
    }
}
