// VDisk benchmarks: each line runs the engine and qemu-img on the same input in the same run and
// prints the ratio (VDisk time / qemu-img time; below 1 means VDisk is faster).
using VDisk.Bench;

if (args.Length > 0 && args[0] == "convert-child") return ConvertBench.Child(args);
if (args.Length > 0 && args[0] == "snapshot-child") return SnapshotBench.Child(args);
if (args.Length > 0 && args[0] == "chain-child") return ChainBench.Child(args);
if (args.Length > 0 && args[0] is "resize-child" or "map-child") return ResizeMapBench.Child(args);
if (args.Length > 0 && args[0] == "check-child") return CheckBench.Child(args);
if (args.Length > 0 && args[0] == "backup-child") return BackupBench.Child(args);
if (args.Length > 0 && args[0] is "encrypt-child" or "decrypt-child") return EncryptBench.Child(args);
if (args.Length > 1 && args[0] == "inputs")
{
    BenchInputs.SyntheticRaw(args[1]);
    BenchInputs.Ext4(args[1]);
    return 0;
}

if (!Tools.OnPath("qemu-img") || !Tools.OnPath("qemu-io"))
{
    Console.Error.WriteLine("qemu-img and qemu-io are needed (apt-get install qemu-utils).");
    return 1;
}
// Usage: VDisk.Bench [io|convert|snapshot|chain|resize-map|check|backup|perf|nbd|encrypt|all] [runs] [GiB scattered in the 1 TiB check image, default 20; encrypt: iter-time ms, default 100]
//        VDisk.Bench inputs <folder> (just write the inputs)
string which = args.Length > 0 ? args[0] : "all";
if (which is not ("io" or "convert" or "snapshot" or "chain" or "resize-map" or "check" or "backup" or "perf" or "nbd" or "encrypt" or "all"))
{
    Console.Error.WriteLine($"Unknown benchmark '{which}'. Usage: VDisk.Bench [io|convert|snapshot|chain|resize-map|check|backup|perf|nbd|encrypt|all] [runs] [GiB|iter-time ms] | VDisk.Bench inputs <folder>");
    return 2;
}
int runs = args.Length > 1 && int.TryParse(args[1], out var r) ? r : 3;
string folder = Path.Combine(Path.GetTempPath(), $"vdisk-bench-{Environment.ProcessId}");
Directory.CreateDirectory(folder);
try
{
    if (which is "convert" or "all")
    {
        Console.WriteLine("Convert: VDisk (-CacheMode Unsafe, as qemu-img convert writes) and VDisk durable (default: flush, then rename)");
        Console.WriteLine("vs qemu-img default and qemu-img -W -m 16 (fastest); ratio = VDisk / qemu-img fastest.");
        Console.WriteLine("Targets: uncompressed <= 1.0, compressed <= 0.7, sizes within 2 %, peak memory < 256 MiB.");
        ConvertBench.Run(folder, BenchInputs.SyntheticRaw(folder), "A", runs);
        ConvertBench.Run(folder, BenchInputs.Ext4(folder), "B", runs);
    }
    if (which is "snapshot" or "all") SnapshotBench.Run(folder, BenchInputs.SyntheticRaw(folder), runs);
    if (which is "chain" or "all") ChainBench.Run(folder, BenchInputs.SyntheticRaw(folder), runs);
    if (which is "resize-map" or "all") ResizeMapBench.Run(folder, BenchInputs.SyntheticRaw(folder), runs);
    if (which is "check" or "all")
        CheckBench.Run(folder, BenchInputs.SyntheticRaw(folder), runs, (args.Length > 2 && long.TryParse(args[2], out var gib) ? gib : 20) << 30);
    if (which is "backup" or "all") BackupBench.Run(folder, BenchInputs.SyntheticRaw(folder), runs);
    if (which is "perf" or "all") PerfBench.Run(folder, runs, which == "perf" && args.Length > 2 ? args[2] : null); // perf 3 None:Seq,DirectSync
    if (which is "nbd" or "all") NbdBench.Run(folder, BenchInputs.SyntheticRaw(folder), runs);
    if (which is "encrypt" or "all")
        EncryptBench.Run(folder, BenchInputs.SyntheticRaw(folder), runs, args.Length > 2 && int.TryParse(args[2], out var iterMs) ? iterMs : 100);
    if (which is not ("io" or "all")) return 0;
    Console.WriteLine($"I/O: median of {runs} runs, same files, same run. Ratio = VDisk / qemu-img (target <= 1.25).");
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
