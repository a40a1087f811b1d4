// VDisk benchmarks: each line runs the engine and qemu-img on the same input in the same run and
// prints the ratio (VDisk time / qemu-img time; below 1 means VDisk is faster).
using VDisk.Bench;

if (!Tools.OnPath("qemu-img") || !Tools.OnPath("qemu-io"))
{
    Console.Error.WriteLine("qemu-img and qemu-io are needed (apt-get install qemu-utils).");
    return 1;
}
int runs = args.Length > 0 && int.TryParse(args[0], out var r) ? r : 3;
string folder = Path.Combine(Path.GetTempPath(), $"vdisk-bench-{Environment.ProcessId}");
Directory.CreateDirectory(folder);
try
{
    Console.WriteLine($"VDisk benchmarks, median of {runs} runs, same files, same run. Ratio = VDisk / qemu-img (target <= 1.25).");
    Console.WriteLine($"{"line",-40} {"VDisk s",9} {"qemu s",9} {"ratio",7}");
    bool allMet = true;
    foreach (var (line, ours, qemu) in IoBench.Run(folder, runs))
    {
        double ratio = ours / qemu;
        allMet &= ratio <= 1.25;
        Console.WriteLine($"{line,-40} {ours,9:F3} {qemu,9:F3} {ratio,7:F2}{(ratio > 1.25 ? "  (over target)" : "")}");
    }
    long heap = IoBench.TerabyteHeapPeak(folder);
    Console.WriteLine($"1 TiB sparse qcow2, 2000 scattered reads + full map walk: peak managed heap {heap / 1048576.0:F1} MiB (target < 64 MiB)");
    Console.WriteLine(allMet && heap < 64L << 20 ? "All targets met." : "Some targets missed (see above).");
    return 0;
}
finally
{
    Directory.Delete(folder, recursive: true);
}
