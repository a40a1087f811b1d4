// Issue 10 benchmark: Measure-VDiskPerformance's engine (PerformanceTarget) beside `qemu-img bench` on the same 1 GiB
// qcow2 file (tables preallocated, every cluster written), in the same cache mode, with the same request size, count
// and queue depth (32), taking turns. qemu-img bench does not time a closing flush (it flushes when it closes the
// image, after its clock stops), so the engine's time is taken without its closing flush (FlushElapsed) too. Random
// patterns: the engine picks uniformly random offsets, qemu-img bench steps 1 MiB + 4 KiB (co-prime with the image
// size, so every request hits a new block). Before every timing the file is written back and dropped from the page
// cache, and the two sides take turns going first. Prints IOPS of each and the ratio VDisk / qemu-img, flagging any
// outside ±20 %.
using System.Globalization;
using System.Text.RegularExpressions;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;

namespace VDisk.Bench;

internal static partial class PerfBench
{
    private const long ImageSize = 1L << 30;
    private const long Stride = (1 << 20) + 4096;
    private const int Depth = PerformanceOptions.DefaultQueueDepth;

    [GeneratedRegex(@"Run completed in ([0-9.]+) seconds")]
    private static partial Regex Completed();

    /// <summary>Runs every (mode, pattern) <paramref name="runs"/> times each way; returns true when every ratio is within ±20 %.</summary>
    public static bool Run(string folder, int runs)
    {
        string image = Path.Combine(folder, "perf.qcow2");
        Tools.Run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", image, ImageSize.ToString());
        var fill = new List<string> { "-f", "qcow2", "-t", "writeback" };
        for (long offset = 0; offset < ImageSize; offset += 64 << 20) fill.AddRange(new[] { "-c", $"write -q -P 0xa5 {offset} {64 << 20}" });
        fill.Add(image);
        Tools.Run("qemu-io", fill.ToArray());
        Tools.Run("sync");
        Console.WriteLine($"Measure-VDiskPerformance vs qemu-img bench: 1 GiB qcow2, queue depth {Depth}, median of {runs} runs each, taking turns.");
        Console.WriteLine("Ratio = VDisk IOPS / qemu-img IOPS (target 0.8 .. 1.2).");
        Console.WriteLine($"{"mode",-13}{"pattern",-16}{"requests",9}{"VDisk IOPS",12}{"qemu IOPS",12}{"ratio",7}{"VDisk cpu us/io",17}");
        bool within = true;
        foreach (var mode in new[] { CacheMode.None, CacheMode.Writethrough, CacheMode.Writeback, CacheMode.DirectSync, CacheMode.Unsafe })
        {
            foreach (var pattern in Enum.GetValues<IoPattern>())
            {
                long count = Count(mode, pattern);
                var ours = new List<PerformanceResult>();
                var qemu = new List<double>();
                for (int i = 0; i < runs; i++)
                {
                    // Each side starts from the same state: nothing dirty, nothing of the file cached (an O_DIRECT read
                    // of dirty cached pages first writes them back, which would bill one side for the other's writes),
                    // and the two take turns going first.
                    if (i % 2 == 1) { Settle(image); qemu.Add(Qemu(image, mode, pattern, count)); }
                    Settle(image);
                    ours.Add(Engine(image, mode, pattern, count));
                    if (i % 2 == 0) { Settle(image); qemu.Add(Qemu(image, mode, pattern, count)); }
                }
                var median = ours.OrderBy(Unflushed).ElementAt(runs / 2);
                double ourIops = count / Unflushed(median);
                double qemuIops = count / qemu.Order().ElementAt(runs / 2);
                double ratio = ourIops / qemuIops;
                bool ok = ratio is >= 0.8 and <= 1.2;
                within &= ok;
                Console.WriteLine($"{mode,-13}{pattern,-16}{count,9}{ourIops,12:F0}{qemuIops,12:F0}{ratio,7:F2}{median.CpuMicrosecondsPerIo,17:F1}{(ok ? "" : "  (outside ±20 %)")}");
            }
        }
        File.Delete(image);
        Console.WriteLine(within ? "All ratios within ±20 %." : "Some ratios outside ±20 % (see above).");
        return within;
    }

    // Writes back everything and drops the image from the page cache (posix_fadvise DONTNEED, through dd).
    private static void Settle(string image)
    {
        Tools.Run("sync");
        Tools.Run("dd", $"if={image}", "iflag=nocache", "count=0", "status=none");
    }

    private static double Unflushed(PerformanceResult r) => (r.Elapsed - r.FlushElapsed).TotalSeconds;

    // About a second per run on a virtio disk: fewer requests where every write waits for the storage.
    private static long Count(CacheMode mode, IoPattern pattern)
    {
        bool slow = pattern.IsWrite() && mode.WritesAreDurable();
        return pattern.IsRandom() ? (slow ? 4000 : 40000) : (slow ? 256 : 4096);
    }

    private static PerformanceResult Engine(string image, CacheMode mode, IoPattern pattern, long count)
    {
        var options = new PerformanceOptions { Format = ImageFormat.Qcow2, AllowWrites = true, Count = count, QueueDepth = Depth, Patterns = new[] { pattern } };
        using var target = PerformanceTarget.Open(image, options);
        return target.Measure(mode, pattern);
    }

    private static double Qemu(string image, CacheMode mode, IoPattern pattern, long count)
    {
        var args = new List<string> { "bench", "-f", "qcow2", "-t", mode.ToString().ToLowerInvariant(), "-d", Depth.ToString(),
            "-c", count.ToString(), "-s", pattern.BlockSize().ToString() };
        if (pattern.IsRandom()) args.AddRange(new[] { "-S", Stride.ToString() });
        if (pattern.IsWrite()) args.AddRange(new[] { "-w", "--pattern=165" });
        args.Add(image);
        var match = Completed().Match(Tools.Run("qemu-img", args.ToArray()));
        if (!match.Success) throw new InvalidOperationException($"qemu-img bench printed no run time for {mode} {pattern}");
        return double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }
}
