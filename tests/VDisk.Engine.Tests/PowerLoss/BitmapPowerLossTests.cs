// Persistent bitmaps under the power-loss simulator (qcow2.rst "Bitmaps"): adding, removing and clearing a bitmap, and a
// guest write to an image with a valid bitmap, crashed at every point (a sample of write subsets per point in CI). Every
// crash image must pass our reference check and, on a sample, qemu-img check (leaks allowed); read the guest content it
// had; and hold the old bitmap set or the new one (names, flags, and each trusted bitmap's dirty ranges). A guest change
// that reached the disk must find every bitmap in use. Leaving out the barrier before the header switch, the one after
// it, or the one between the in_use flags and the guest write makes some crash image fail, so none can go unnoticed.
using System.Text;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.PowerLoss;

public class BitmapPowerLossTests
{
    private const long Size = 4L << 20;
    private const string BackingName = "a-backing-file-with-a-long-name.raw";

    [SkippableTheory]
    [InlineData("add", 4096, false, 2)]
    [InlineData("add", 512, true, 2)]    // an overlay: the backing name moves before the extension grows
    [InlineData("add", 65536, true, 0)]  // the first bitmap: the extension and the autoclear bit appear
    [InlineData("remove", 4096, false, 2)]
    [InlineData("remove", 4096, true, 1)] // the last bitmap: the extension goes
    [InlineData("clear", 512, false, 2)]
    public void EveryCrashLeavesTheOldBitmapSetOrTheNew(string operation, int clusterSize, bool overlay, int bitmaps)
    {
        Qemu.Require();
        var failures = RunChange(operation, clusterSize, overlay, bitmaps, maxFailures: 5);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [SkippableTheory]
    [InlineData(Qcow2HeaderUpdater.BarrierName)]  // the new directory and tables durable before the header points at them
    [InlineData("after header")]                  // the header durable before the old directory's clusters lose their counts
    public void LeavingOutABarrierOfTheSwitchIsCaught(string barrier)
    {
        Qemu.Require();
        using (Qcow2WriteOrder.SkipBarrierBefore(barrier))
            Assert.NotEmpty(RunChange("clear", 4096, false, 2, maxFailures: 1));
    }

    [SkippableTheory]
    [InlineData(4096, false)]
    [InlineData(65536, true)]
    public void AGuestChangeThatReachedTheDiskFindsEveryBitmapInUse(int clusterSize, bool overlay)
    {
        Qemu.Require();
        var failures = RunGuestWrites(clusterSize, overlay, maxFailures: 5);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [SkippableFact]
    public void LeavingOutTheBarrierAfterTheInUseFlagsIsCaught()
    {
        Qemu.Require();
        using (Qcow2WriteOrder.SkipBarrierBefore(Qcow2Image.BitmapsInUseBarrier))
            Assert.NotEmpty(RunGuestWrites(4096, false, maxFailures: 1));
    }

    private static List<string> RunChange(string operation, int clusterSize, bool overlay, int bitmaps, int maxFailures)
    {
        var start = StartImage(clusterSize, overlay, bitmaps);
        var memory = new MemoryStorage("b.qcow2", start);
        var recorder = new PowerLossStorage(memory);
        using (var image = Qcow2Image.Open(recorder, writable: true, Qcow2CacheBudget.Default))
        {
            if (operation == "add") image.AddBitmap("new", 4096);
            else if (operation == "remove") image.RemoveBitmap("old");
            else image.ClearBitmap("old");
        }
        var (oldState, guest) = State(start);
        var (newState, _) = State(memory.ToArray());
        Assert.NotEqual(oldState, newState);
        return Verify(recorder, clusterSize, maxFailures, (state, content) =>
            content.AsSpan().SequenceEqual(guest) ? state == oldState || state == newState ? null : $"the bitmaps are\n{state}\nneither\n{oldState}\nnor\n{newState}"
                : "the guest content changed");
    }

    private static List<string> RunGuestWrites(int clusterSize, bool overlay, int maxFailures)
    {
        var start = StartImage(clusterSize, overlay, 2);
        var recorder = new PowerLossStorage(new MemoryStorage("b.qcow2", start));
        using (var disk = new VirtualDisk("b.qcow2", Qcow2Driver.Open(recorder, writable: true), null, writable: true))
        {
            disk.Write(64 << 10, CrashHarness.Pattern(4096, 1)); // into a cluster qemu-io allocated: no metadata changes
            disk.Write(3L << 20, CrashHarness.Pattern(8192, 2)); // a new cluster
            disk.Flush();
            disk.Write(100, CrashHarness.Pattern(10, 3));
        }
        var (oldState, guest) = State(start);
        Assert.Contains("old", oldState);
        return Verify(recorder, clusterSize, maxFailures, (state, content) =>
            content.AsSpan().SequenceEqual(guest) ? state == oldState || !state.Contains("True") ? null : $"unchanged content, but the bitmaps are\n{state}"
                : state.Contains("True") ? $"the guest content changed, but a bitmap is still trusted:\n{state}" : null);
    }

    // A qemu-img image with data, and `bitmaps` qemu-made bitmaps ("old", "other") with dirty granules.
    private static byte[] StartImage(int clusterSize, bool overlay, int bitmaps)
    {
        using var dir = new TempFolder();
        string img = dir.File("b.qcow2");
        var options = new List<string> { "create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}" };
        if (overlay)
        {
            File.WriteAllBytes(dir.File(BackingName), new byte[Size]);
            options.AddRange(new[] { "-b", BackingName, "-F", "raw" });
        }
        Qemu.Img(options.Concat(new[] { img, Size.ToString() }).ToArray());
        Qemu.Io("-c", "write -P 0x11 0 256k", "-c", "write -P 0x12 1M 64k", img);
        if (bitmaps > 0) Qemu.Img("bitmap", "--add", "-g", "4096", img, "old");
        if (bitmaps > 1) Qemu.Img("bitmap", "--add", "-g", "65536", img, "other");
        Qemu.Io("-c", "write -P 0x13 128k 8k", "-c", "write -P 0x14 2M 1k", img);
        Qemu.CheckClean(img);
        return File.ReadAllBytes(img);
    }

    // The bitmaps (name, granularity, flags, trusted; a trusted one's ranges), and the image's own guest content.
    private static (string State, byte[] Guest) State(byte[] bytes)
    {
        using var driver = Qcow2Driver.Open(new MemoryStorage("b.qcow2", bytes, canWrite: false), writable: false);
        var text = new StringBuilder();
        foreach (var b in driver.Bitmaps)
        {
            text.Append($"{b.Name} {b.Granularity} {b.Flags} {b.Consistent}:");
            if (b.Consistent) foreach (var r in driver.ReadBitmap(b.Name)) text.Append($" {r.Offset}+{r.Length}");
            text.Append('\n');
        }
        using var disk = new VirtualDisk("b.qcow2", Qcow2Driver.Open(new MemoryStorage("b.qcow2", bytes, canWrite: false), writable: false), null, writable: false);
        return (text.ToString(), Images.ReadAll(disk));
    }

    private static List<string> Verify(PowerLossStorage recorder, int seed, int maxFailures, Func<string, byte[], string?> judge)
    {
        Assert.True(recorder.FlushCount >= 2, $"the operation should flush several times (did {recorder.FlushCount})");
        using var scratch = new TempFolder();
        File.WriteAllBytes(scratch.File(BackingName), new byte[Size]); // what an overlay's qemu-img check opens
        var failures = new List<string>();
        int n = 0;
        foreach (var crash in recorder.CrashImages(new Random(seed), CrashHarness.FullSweep ? 12 : 4))
        {
            string? failure;
            try
            {
                (failure, _) = Qcow2Consistency.Check("b.qcow2", crash.Bytes);
                if (failure is null)
                {
                    var (state, guest) = State(crash.Bytes);
                    failure = judge(state, guest);
                }
            }
            catch (VDiskException e)
            {
                failure = $"does not read: {e.Message}";
            }
            if (failure is null && n % (CrashHarness.FullSweep ? 1 : 4) == 0)
                failure = CrashHarness.QemuCheckProblem(scratch, crash.Bytes);
            n++;
            if (failure != null) failures.Add($"{crash.Description}: {failure}");
            if (failures.Count >= maxFailures) break;
        }
        Assert.True(n > 5 || failures.Count > 0, $"only {n} crash images");
        return failures;
    }
}
