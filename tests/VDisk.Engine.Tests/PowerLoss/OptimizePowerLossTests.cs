// Quick optimize (Optimize-VDisk) under the power-loss simulator: an image with leaked clusters and with data clusters
// the guest filled with zeroes, with and without a backing file, is optimized (leaks given back, zero clusters made,
// free clusters punched out, the free end cut off) while every write, discard, resize and flush is recorded. Every crash
// image must check without corruption (leaks allowed), read exactly the guest content it had before, and qemu-img
// check must agree on a sample (all of them with VDISK_POWERLOSS_FULL=1).
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.PowerLoss;

public class OptimizePowerLossTests
{
    private const int ClusterSize = 4096;
    private const long Size = 4 << 20;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EveryCrashImageOfAQuickOptimizeIsConsistentAndKeepsTheGuestData(bool backing)
    {
        Qemu.Require();
        var backingContent = backing ? CrashHarness.Pattern((int)Size, 99) : null;
        var start = ZeroedImage(backingContent);
        var guest = GuestContent(start, backingContent);
        var before = Qcow2Check.Run(new MemoryStorage("o.qcow2", start, canWrite: false));
        Assert.True(before.Leaks > 0 && before.Corruptions == 0, "the starting image should leak and be otherwise consistent");

        var optimized = new MemoryStorage("o.qcow2", start);
        var recorder = new PowerLossStorage(optimized);
        var analysis = Qcow2Check.Analyze(recorder);
        long zeroed;
        using (var image = Qcow2Image.Open(recorder, writable: true, Qcow2CacheBudget.Default))
        {
            image.Repair(analysis, all: false);
            zeroed = image.ZeroClustersReadingAsZeroes(backing, CancellationToken.None);
            image.TrimFreeSpace(CancellationToken.None);
        }
        Assert.True(zeroed >= 64, $"only {zeroed} clusters were zeroed");
        var after = Qcow2Check.Run(new MemoryStorage("o.qcow2", optimized.ToArray(), canWrite: false));
        Assert.True(after.IsClean, $"after optimize: {after.Corruptions} corruption(s), {after.Leaks} leak(s)");
        Assert.True(optimized.Length < start.Length, $"the file should have shrunk ({start.Length} -> {optimized.Length})");

        using var dir = new TempFolder();
        if (backingContent != null) File.WriteAllBytes(dir.File(CrashHarness.BackingName), backingContent);
        var failures = new List<string>();
        int n = 0, qemuEvery = CrashHarness.FullSweep ? 1 : 8;
        foreach (var crash in recorder.CrashImages(new Random(11), CrashHarness.FullSweep ? 12 : 4))
        {
            string? failure = VerifyOne(crash.Bytes, guest, backingContent, n++ % qemuEvery == 0 ? dir : null);
            if (failure != null) failures.Add($"{crash.Description}: {failure}");
            if (failures.Count >= 5) break;
        }
        Assert.True(n >= 8, $"only {n} crash images");
        Assert.True(failures.Count == 0, $"{failures.Count} crash image(s) failed:\n{string.Join("\n", failures)}");
    }

    private static string? VerifyOne(byte[] bytes, byte[] guest, byte[]? backing, TempFolder? qemuDir)
    {
        var (failure, _) = Qcow2Consistency.Check("o.qcow2", bytes);
        if (failure != null) return failure;
        if (!GuestContent(bytes, backing).AsSpan().SequenceEqual(guest)) return "the guest content changed";
        if (qemuDir is null) return null;
        string path = qemuDir.File("o.qcow2");
        File.WriteAllBytes(path, bytes);
        var (code, output) = Qemu.TryImg("check", "-f", "qcow2", path);
        return code is 0 or 3 ? null : $"qemu-img check exited {code}: {output}";
    }

    // Guest data in the first and last MiB, 1 MiB in the middle overwritten with zero-filled data, and leaked clusters
    // from a crash between a count and the L2 entry that would have used it.
    private static byte[] ZeroedImage(byte[]? backing)
    {
        var memory = new MemoryStorage("o.qcow2");
        Qcow2Creator.WriteEmpty(memory, new CreateOptions { Size = Size, ClusterSize = ClusterSize }, Size,
            backing is null ? null : CrashHarness.BackingName, backing is null ? null : ImageFormat.Raw);
        using (var disk = Open(memory, backing, writable: true))
        {
            disk.Write(0, CrashHarness.Pattern(1 << 20, 1));
            disk.Write(1 << 20, CrashHarness.Pattern(1 << 20, 2));
            disk.Write(Size - (1 << 20), CrashHarness.Pattern(1 << 20, 3));
            disk.Write(1 << 20, new byte[1 << 20]); // the guest zeroes what it wrote: data clusters full of zeroes
        }
        var recorder = new PowerLossStorage(new MemoryStorage("o.qcow2", memory.ToArray()));
        using (var disk = Open(recorder, backing, writable: true))
        {
            for (int i = 0; i < 6; i++)
            {
                disk.Write((2L << 20) + i * 3L * ClusterSize, CrashHarness.Pattern(2 * ClusterSize, 10 + i));
                disk.Flush();
            }
        }
        foreach (var crash in recorder.CrashImages(new Random(4), 4))
        {
            var report = Qcow2Check.Run(new MemoryStorage("o.qcow2", crash.Bytes, canWrite: false));
            if (report.Leaks > 0 && report.Corruptions == 0 && !report.Dirty) return crash.Bytes;
        }
        throw new InvalidOperationException("no crash image leaked clusters");
    }

    private static VirtualDisk Open(IStorage storage, byte[]? backing, bool writable)
        => new("o.qcow2", Qcow2Driver.Open(storage, writable), backing is null ? null : MemoryImages.Raw(backing), writable);

    private static byte[] GuestContent(byte[] bytes, byte[]? backing)
    {
        using var disk = Open(new MemoryStorage("o.qcow2", bytes, canWrite: false), backing, writable: false);
        return Images.ReadAll(disk);
    }
}
