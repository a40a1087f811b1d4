// Issue "Convert" benchmark: each conversion run by VDisk (in a child process, so time and peak memory
// are measured the same way) and by qemu-img with its defaults and with its fastest setting (-W -m 16),
// on the same input in the same run, timed with GNU time. qemu-img convert writes its output with
// cache=unsafe (no flush at the end), so the ratio compares VDisk with -CacheMode Unsafe; "durable" is
// VDisk's default, which flushes before renaming the output into place.
using System.Diagnostics;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;

namespace VDisk.Bench;

internal static class ConvertBench
{
    private sealed record Line(string Name, string SourceFormat, string Format, string[] QemuOptions, ConvertOptions Ours);

    private static readonly Line[] Lines =
    {
        new("raw->qcow2", "raw", "qcow2", Array.Empty<string>(), new ConvertOptions { DestinationFormat = ImageFormat.Qcow2 }),
        new("qcow2->raw", "qcow2", "raw", Array.Empty<string>(), new ConvertOptions { DestinationFormat = ImageFormat.Raw }),
        new("raw->qcow2 zlib", "raw", "qcow2", new[] { "-c" }, new ConvertOptions { Compress = true }),
        new("raw->qcow2 zstd", "raw", "qcow2", new[] { "-c", "-o", "compression_type=zstd" }, new ConvertOptions { Compress = true, CompressionType = CompressionType.Zstd }),
        new("raw->vmdk", "raw", "vmdk", Array.Empty<string>(), new ConvertOptions { DestinationFormat = ImageFormat.Vmdk }),
        new("raw->vmdk streamOptimized", "raw", "vmdk", new[] { "-o", "subformat=streamOptimized" }, new ConvertOptions { DestinationFormat = ImageFormat.Vmdk, Subformat = ImageSubformat.StreamOptimized }),
        new("raw->vdi", "raw", "vdi", Array.Empty<string>(), new ConvertOptions { DestinationFormat = ImageFormat.Vdi }),
    };

    /// <summary>The child-process side: runs one conversion described on the command line.</summary>
    public static int Child(string[] args)
    {
        var o = new ConvertOptions
        {
            DestinationFormat = Enum.Parse<ImageFormat>(args[3], true),
            Subformat = Enum.Parse<ImageSubformat>(args[4], true),
            Compress = bool.Parse(args[5]),
            CompressionType = Enum.Parse<CompressionType>(args[6], true),
            CacheMode = Enum.Parse<CacheMode>(args[7], true),
        };
        ConvertImage.Run(args[1], args[2], o);
        return 0;
    }

    public static void Run(string folder, string input, string inputName, int runs)
    {
        string qcow2Input = Path.Combine(folder, inputName + ".qcow2");
        Tools.Run("qemu-img", "convert", "-O", "qcow2", input, qcow2Input);
        Console.WriteLine($"{inputName}: {"line",-26} {"VDisk",7} {"durable",8} {"qemu",7} {"qemu -W",8} {"ratio",6} {"MiB ours/qemu",18} {"size",6} {"peak MiB ours/qemu",19}");
        foreach (var line in Lines)
        {
            string source = line.SourceFormat == "qcow2" ? qcow2Input : input;
            Warm(source);
            string ours = Path.Combine(folder, "ours." + line.Format), theirs = Path.Combine(folder, "theirs." + line.Format);
            var qemuArgs = new List<string> { "convert", "-f", line.SourceFormat, "-O", line.Format };
            qemuArgs.AddRange(line.QemuOptions);
            var m = Medians(runs,
                (OurCommand(source, ours, line.Ours with { CacheMode = CacheMode.Unsafe }), ours),
                (OurCommand(source, ours, line.Ours), ours),
                (("qemu-img", qemuArgs.Concat(new[] { source, theirs }).ToArray()), theirs),
                (("qemu-img", qemuArgs.Concat(new[] { "-W", "-m", "16", source, theirs }).ToArray()), theirs));
            var (oursTime, durableTime, qemuTime, fastTime) = (m[0].Seconds, m[1].Seconds, m[2].Seconds, m[3].Seconds);
            string ratio = oursTime > 0 ? (oursTime / fastTime).ToString("F2") : "n/a";
            string sizes = $"{m[0].OutputBytes / 1048576.0:F1}/{m[2].OutputBytes / 1048576.0:F1}";
            string sizeDelta = m[2].OutputBytes > 0 ? $"{Math.Round((m[0].OutputBytes - m[2].OutputBytes) * 100.0 / m[2].OutputBytes, 1):+0.0;-0.0;0.0}%" : "n/a";
            Console.WriteLine($"{inputName}: {line.Name,-26} {Show(oursTime),7} {Show(durableTime),8} {qemuTime,7:F2} {fastTime,8:F2} {ratio,6} {sizes,18} {sizeDelta,6} {$"{m[0].PeakBytes >> 20}/{m[2].PeakBytes >> 20}",19}");
        }
        File.Delete(qcow2Input);
    }

    // Runs each conversion `runs` times (at least 9 when every run is short), taking turns so a noisy spell of the
    // machine hits them all, deleting the output after each run; per conversion: median time (-1 when it failed),
    // largest peak memory, output size.
    private const int ShortJobRuns = 9;          // jobs under half a second are mostly noise at 3 runs
    private const double ShortJobSeconds = 0.5;

    internal static (double Seconds, long PeakBytes, long OutputBytes)[] Medians(int runs, params ((string, string[]) Command, string Output)[] conversions)
    {
        var times = conversions.Select(_ => new List<double>()).ToArray();
        var peaks = new long[conversions.Length];
        var sizes = new long[conversions.Length];
        for (int run = 0; run < runs || (run < ShortJobRuns && times.All(t => t.Max() < ShortJobSeconds)); run++)
        {
            for (int i = 0; i < conversions.Length; i++)
            {
                var (seconds, bytes) = TimeIt(conversions[i].Command);
                times[i].Add(seconds);
                peaks[i] = Math.Max(peaks[i], bytes);
                sizes[i] = Size(conversions[i].Output);
                Delete(conversions[i].Output);
            }
        }
        return times.Select((t, i) =>
        {
            t.Sort();
            return (t.Contains(-1) ? -1 : t[t.Count / 2], peaks[i], sizes[i]);
        }).ToArray();
    }

    private static (string, string[]) OurCommand(string source, string destination, ConvertOptions o)
    {
        string self = typeof(ConvertBench).Assembly.Location;
        return ("dotnet", new[] { self, "convert-child", source, destination, o.DestinationFormat.ToString(), o.Subformat.ToString(),
            o.Compress.ToString(), o.CompressionType.ToString(), o.CacheMode.ToString() });
    }

    // Elapsed seconds and peak resident memory (bytes) of a command, from GNU time; time -1 when it failed.
    private static (double Seconds, long PeakBytes) TimeIt((string Tool, string[] Args) command)
    {
        Tools.Run("sync"); // start every run with no dirty pages, or the kernel throttles whoever writes next
        var psi = new ProcessStartInfo("/usr/bin/time") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add("-f");
        psi.ArgumentList.Add("VDISKBENCH %e %M");
        psi.ArgumentList.Add(command.Tool);
        foreach (var a in command.Args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        p.StandardOutput.ReadToEndAsync();
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        var last = err.Split('\n').LastOrDefault(l => l.StartsWith("VDISKBENCH ", StringComparison.Ordinal));
        if (p.ExitCode != 0 || last is null)
        {
            Console.Error.WriteLine($"  ({command.Tool} failed: {err.Trim().Split('\n').FirstOrDefault()})");
            return (-1, 0);
        }
        var parts = last.Split(' ');
        return (double.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture), long.Parse(parts[2]) * 1024);
    }

    internal static void Warm(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        var buffer = new byte[1 << 20];
        while (f.Read(buffer) > 0) { }
    }

    private static long Size(string path) => File.Exists(path) ? new FileInfo(path).Length : 0;

    private static void Delete(string path)
    {
        foreach (var f in Directory.GetFiles(Path.GetDirectoryName(path)!, Path.GetFileNameWithoutExtension(path) + "*")) File.Delete(f);
    }

    private static string Show(double seconds) => seconds < 0 ? "failed" : seconds.ToString("F2");
}
