// Issue 10 benchmark: Measure-VDiskPerformance's engine (PerformanceTarget) beside `qemu-img bench` and, as a device
// reference independent of both, fio, in each cache mode, with the same request size, count and queue depth (32).
// Two files of 1 GiB, every byte written: a raw file (fio, qemu-img bench -f raw and the engine all run on it) and a
// qcow2 (tables preallocated; qemu-img bench and the engine). fio runs 32 psync threads (QEMU's aio=threads and the
// engine both keep 32 synchronous requests in flight from 32 threads), direct=1 for None and DirectSync, sync=dsync
// (O_DSYNC) for Writethrough and DirectSync. Every tool's CPU time is measured (bash `times` of the child for fio and
// qemu-img, the process's CPU time for the engine) and printed per request: on a shared machine wall time is noisy,
// CPU time per request much less so, and it tells whether a tool is measuring the storage or itself.
//
// A ratio VDisk / qemu-img outside ±20 % is a failure only where both are device-bound. A tool is CPU-bound when its
// CPU time per request (its own and the kernel's on its behalf), at the best rate any of the three reached on this
// file, would need a whole core or more of this machine: then it measures the CPU, not the storage. That is the case
// for qemu-img bench's 4 KiB requests (every request goes from its event-loop thread to a worker thread and back,
// about 50 us of CPU) and for every tool's 1 MiB requests through the page cache (copies, readahead, dirty throttling).
// Writethrough and DirectSync writes are checked against fio with O_DSYNC instead, when neither is CPU-bound: QEMU
// implements them as a write followed by fdatasync with one flush in flight at a time, the engine as O_DSYNC writes,
// the same guarantee.
// qemu-img bench does not time a closing flush, so neither fio (end_fsync=0) nor the engine (FlushElapsed left out)
// does here. Sequential patterns make one pass over the image (1024 requests), so every request reads or writes the
// storage rather than the page cache. Before every timing the file is written back and dropped from the page cache
// (posix_fadvise DONTNEED through dd), and the tools take turns going first.
using System.Globalization;
using System.Text.Json;
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
    private const double CpuBoundCores = 1.0;

    [GeneratedRegex(@"Run completed in ([0-9.]+) seconds")]
    private static partial Regex Completed();

    [GeneratedRegex(@"(\d+)m([0-9.]+)s\s+(\d+)m([0-9.]+)s\s*$")]
    private static partial Regex ChildTimes();

    /// <summary>One timing: requests, seconds (as the tool times them) and CPU seconds of the tool.</summary>
    private readonly record struct Sample(long Requests, double Seconds, double Cpu)
    {
        public double Iops => Requests / Seconds;
        public double CpuMicrosecondsPerIo => Cpu * 1e6 / Requests;
    }

    private sealed record Side(string Name, Func<CacheMode, IoPattern, long, Sample> Run);

    /// <summary>Runs every (mode, pattern) <paramref name="runs"/> times each way; returns true when every checked ratio is within ±20 %.</summary>
    public static bool Run(string folder, int runs, string? only = null)
    {
        bool fio = Tools.OnPath("fio");
        string qcow2 = Path.Combine(folder, "perf.qcow2");
        string raw = Path.Combine(folder, "perf.raw");
        Tools.Run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", qcow2, ImageSize.ToString());
        Tools.Run("qemu-img", "create", "-q", "-f", "raw", raw, ImageSize.ToString());
        Fill(qcow2, "qcow2");
        Fill(raw, "raw");
        Tools.Run("sync");
        var sides = new List<Side>();
        if (fio) sides.Add(new("fio", (m, p, c) => Fio(raw, m, p, c)));
        else Console.WriteLine("fio is not installed (apt-get install fio): no device reference, Writethrough/DirectSync writes not checked.");
        sides.Add(new("qemu raw", (m, p, c) => Qemu(raw, "raw", m, p, c)));
        sides.Add(new("VDisk raw", (m, p, c) => Engine(raw, ImageFormat.Raw, m, p, c)));
        sides.Add(new("qemu qcow2", (m, p, c) => Qemu(qcow2, "qcow2", m, p, c)));
        sides.Add(new("VDisk qcow2", (m, p, c) => Engine(qcow2, ImageFormat.Qcow2, m, p, c)));

        Console.WriteLine($"Measure-VDiskPerformance vs qemu-img bench vs fio: 1 GiB raw and qcow2, queue depth {Depth}, median of {runs} runs each, taking turns.");
        Console.WriteLine("Each cell: requests/s, CPU microseconds per request. Ratio = VDisk / qemu-img (target 0.8 .. 1.2 where qemu-img bench is device-bound).");
        Console.WriteLine($"A tool counts as CPU-bound when its CPU per request, at the best rate seen, needs >= {CpuBoundCores} core (load average now {LoadAverage()}).");
        Console.Write($"{"mode",-13}{"pattern",-16}{"reqs",6}");
        foreach (var side in sides) Console.Write($"{side.Name,20}");
        Console.WriteLine($"{"raw",6}{"qcow2",6}  verdict");
        bool within = true;
        foreach (var mode in new[] { CacheMode.None, CacheMode.Writethrough, CacheMode.Writeback, CacheMode.DirectSync, CacheMode.Unsafe })
        {
            foreach (var pattern in Enum.GetValues<IoPattern>())
            {
                if (only != null && !only.Split(',').Any(o => $"{mode}:{pattern}".StartsWith(o, StringComparison.OrdinalIgnoreCase))) continue;
                long count = Count(mode, pattern);
                var samples = sides.Select(_ => new List<Sample>()).ToArray();
                for (int i = 0; i < runs; i++)
                    for (int k = 0; k < sides.Count; k++)
                    {
                        int s = (k + i) % sides.Count; // taking turns going first
                        Settle(raw);
                        Settle(qcow2);
                        samples[s].Add(sides[s].Run(mode, pattern, count));
                    }
                var medians = samples.Select(list => list.OrderBy(x => x.Seconds).ElementAt(list.Count / 2)).ToArray();
                Sample Of(string name) => medians[sides.FindIndex(x => x.Name == name)];
                double best = medians.Max(x => x.Iops);
                var qemuQcow2 = Of("qemu qcow2");
                double qemuCores = Math.Max(Of("qemu raw").CpuMicrosecondsPerIo, qemuQcow2.CpuMicrosecondsPerIo) * best / 1e6;
                double ourCores = Math.Max(Of("VDisk raw").CpuMicrosecondsPerIo, Of("VDisk qcow2").CpuMicrosecondsPerIo) * best / 1e6;
                double rawRatio = Of("VDisk raw").Iops / Of("qemu raw").Iops;
                double qcow2Ratio = Of("VDisk qcow2").Iops / qemuQcow2.Iops;
                string verdict;
                if (pattern.IsWrite() && mode.WritesAreDurable())
                {
                    if (!fio) verdict = "not checked: QEMU writes + fdatasync, one flush at a time; VDisk O_DSYNC";
                    else if (Of("fio").CpuMicrosecondsPerIo * best / 1e6 >= CpuBoundCores || ourCores >= CpuBoundCores)
                        verdict = $"QEMU: write + fdatasync, one flush at a time; VDisk: O_DSYNC. CPU-bound (at {best:F0}/s fio needs " +
                            $"{Of("fio").CpuMicrosecondsPerIo * best / 1e6:F2} core, VDisk {ourCores:F2}): VDisk raw / fio dsync {Of("VDisk raw").Iops / Of("fio").Iops:F2}, not checked";
                    else
                    {
                        double vsFio = Of("VDisk raw").Iops / Of("fio").Iops;
                        bool ok = vsFio is >= 0.8 and <= 1.2;
                        within &= ok;
                        verdict = $"QEMU: write + fdatasync, one flush at a time; VDisk: O_DSYNC. VDisk raw / fio dsync {vsFio:F2}{(ok ? "" : " (outside ±20 %)")}";
                    }
                }
                else if (qemuCores >= CpuBoundCores || ourCores >= CpuBoundCores)
                    verdict = $"CPU-bound (at {best:F0}/s qemu-img needs {qemuCores:F2} core, VDisk {ourCores:F2}): not checked";
                else
                {
                    bool ok = rawRatio is >= 0.8 and <= 1.2 && qcow2Ratio is >= 0.8 and <= 1.2;
                    within &= ok;
                    verdict = $"device-bound (qemu {qemuCores:F2}, VDisk {ourCores:F2} core){(ok ? ", within ±20 %" : ": outside ±20 %")}";
                }
                Console.Write($"{mode,-13}{pattern,-16}{count,6}");
                foreach (var m in medians) Console.Write($"{m.Iops,12:F0}{m.CpuMicrosecondsPerIo,7:F1}us");
                Console.WriteLine($"{rawRatio,6:F2}{qcow2Ratio,6:F2}  {verdict}");
            }
        }
        File.Delete(qcow2);
        File.Delete(raw);
        Console.WriteLine(within ? "All checked ratios within ±20 %." : "Some checked ratios outside ±20 % (see above).");
        return within;
    }

    private static void Fill(string image, string format)
    {
        var fill = new List<string> { "-f", format, "-t", "writeback" };
        for (long offset = 0; offset < ImageSize; offset += 64 << 20) fill.AddRange(new[] { "-c", $"write -q -P 0xa5 {offset} {64 << 20}" });
        fill.Add(image);
        Tools.Run("qemu-io", fill.ToArray());
    }

    // Writes back everything and drops the file from the page cache (posix_fadvise DONTNEED, through dd).
    private static void Settle(string image)
    {
        Tools.Run("sync");
        Tools.Run("dd", $"if={image}", "iflag=nocache", "count=0", "status=none");
    }

    private static string LoadAverage()
    {
        try { return File.ReadAllText("/proc/loadavg").Split(' ')[0]; }
        catch (IOException) { return "?"; }
    }

    // One pass over the image for sequential patterns; fewer requests where every write waits for the storage.
    private static long Count(CacheMode mode, IoPattern pattern)
    {
        bool slow = pattern.IsWrite() && mode.WritesAreDurable();
        return pattern.IsRandom() ? (slow ? 4096 : 20480) : (slow ? 256 : 1024);
    }

    private static Sample Engine(string image, ImageFormat format, CacheMode mode, IoPattern pattern, long count)
    {
        var options = new PerformanceOptions { Format = format, AllowWrites = true, Count = count, QueueDepth = Depth, Patterns = new[] { pattern } };
        using var target = PerformanceTarget.Open(image, options);
        var r = target.Measure(mode, pattern);
        return new Sample(r.Operations, (r.Elapsed - r.FlushElapsed).TotalSeconds, r.CpuMicrosecondsPerIo * r.Operations / 1e6);
    }

    private static Sample Qemu(string image, string format, CacheMode mode, IoPattern pattern, long count)
    {
        var args = new List<string> { "bench", "-f", format, "-t", mode.ToString().ToLowerInvariant(), "-d", Depth.ToString(),
            "-c", count.ToString(), "-s", pattern.BlockSize().ToString() };
        if (pattern.IsRandom()) args.AddRange(new[] { "-S", Stride.ToString() });
        if (pattern.IsWrite()) args.AddRange(new[] { "-w", "--pattern=165" });
        args.Add(image);
        var (output, cpu) = Timed("qemu-img", args);
        var match = Completed().Match(output);
        if (!match.Success) throw new InvalidOperationException($"qemu-img bench printed no run time for {mode} {pattern}");
        return new Sample(count, double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture), cpu);
    }

    // 32 psync threads, each with count/32 requests: random over the whole file, sequential over its own 32 MiB slice.
    private static Sample Fio(string image, CacheMode mode, IoPattern pattern, long count)
    {
        string rw = pattern switch
        {
            IoPattern.RandomRead => "randread", IoPattern.RandomWrite => "randwrite", IoPattern.SequentialRead => "read", _ => "write",
        };
        var args = new List<string> { "--name=perf", $"--filename={image}", "--thread", $"--numjobs={Depth}", "--group_reporting",
            "--ioengine=psync", $"--rw={rw}", $"--bs={pattern.BlockSize()}", $"--number_ios={count / Depth}",
            $"--direct={(mode.BypassesHostCache() ? 1 : 0)}", "--output-format=json", "--end_fsync=0" };
        if (mode.WritesAreDurable()) args.Add("--sync=dsync");
        if (pattern.IsRandom()) args.AddRange(new[] { $"--size={ImageSize}", "--norandommap", "--randrepeat=0" });
        else args.AddRange(new[] { $"--size={ImageSize / Depth}", $"--offset_increment={ImageSize / Depth}" });
        var (output, cpu) = Timed("fio", args);
        using var json = JsonDocument.Parse(output[output.IndexOf('{')..]);
        var job = json.RootElement.GetProperty("jobs")[0].GetProperty(pattern.IsWrite() ? "write" : "read");
        long ios = job.GetProperty("total_ios").GetInt64();
        double seconds = job.GetProperty("runtime").GetDouble() / 1000; // milliseconds, the slowest thread's
        return new Sample(ios, seconds, cpu);
    }

    // Runs the tool under bash and returns its output and its CPU time (user + system, from bash's `times`).
    private static (string Output, double Cpu) Timed(string tool, IReadOnlyList<string> args)
    {
        string times = Path.GetTempFileName();
        try
        {
            var all = new List<string> { "-c", "\"$0\" \"$@\"; rc=$?; times > " + QuoteForBash(times) + "; exit $rc", tool };
            all.AddRange(args);
            string output = Tools.Run("bash", all.ToArray());
            var match = ChildTimes().Match(File.ReadAllText(times));
            if (!match.Success) throw new InvalidOperationException($"bash printed no child times for {tool}");
            double Part(int minutes, int seconds) =>
                int.Parse(match.Groups[minutes].Value, CultureInfo.InvariantCulture) * 60 + double.Parse(match.Groups[seconds].Value, CultureInfo.InvariantCulture);
            return (output, Part(1, 2) + Part(3, 4));
        }
        finally
        {
            File.Delete(times);
        }
    }

    private static string QuoteForBash(string s) => "'" + s.Replace("'", "'\\''") + "'";
}
