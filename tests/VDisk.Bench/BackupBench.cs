// Backup benchmark (issue 11 "Performance"), side by side in one run on input A (4 GiB, ~1.5 GiB data) as a qcow2
// source: a full compressed backup against Convert-VDisk -Compress and qemu-img convert -c (targets: <= 1.0 and
// < 1.0); an incremental backup after 256 MiB of scattered writes against one sequential read of the source
// (cat > /dev/null) plus writing the changes (qemu-img convert -c of the 256 MiB changed, as one file) — target <= 1.0;
// and the same incremental with the dirty bitmap the full backup added (QEMU's writes marked it) against copying the
// 256 MiB changed (qemu-img convert -c of them, as the point stores them compressed) — target <= 1.5.
// VDisk runs in a child process, as a scheduled script runs it; sets are fresh copies before every timing.
using VDisk.Engine.Backup;
using VDisk.Engine.Operations;

namespace VDisk.Bench;

internal static class BackupBench
{
    private const long Changed = 256L << 20, WriteSize = 1L << 20;

    /// <summary>The child-process side: "backup-child backup SOURCE SET" or "backup-child convert SOURCE OUTPUT".</summary>
    public static int Child(string[] args)
    {
        if (args[1] == "backup") BackupImage.Run(args[2], args[3], new BackupOptions());
        else ConvertImage.Run(args[2], args[3], new ConvertOptions { Compress = true, Overwrite = true });
        return 0;
    }

    public static void Run(string folder, string input, int runs)
    {
        string source = Path.Combine(folder, "backup-source.qcow2"), changedSource = Path.Combine(folder, "backup-source-changed.qcow2");
        string pristineSet = Path.Combine(folder, "pristine-set"), set = Path.Combine(folder, "set"), output = Path.Combine(folder, "out.qcow2");
        string changes = Path.Combine(folder, "changes.raw");
        string pristineMarked = Path.Combine(folder, "backup-source-marked.qcow2");
        Tools.Run("qemu-img", "convert", "-O", "qcow2", input, source);
        Tools.Run("cp", "--sparse=always", source, changedSource); // no bitmap: the hash path
        WriteScattered(changedSource, new FileInfo(input).Length, changes);
        BackupImage.Run(source, pristineSet, new BackupOptions()); // adds the set's bitmap to the source
        Tools.Run("cp", "--sparse=always", source, pristineMarked);
        WriteScattered(pristineMarked, new FileInfo(input).Length, null); // QEMU marks the bitmap
        string self = typeof(BackupBench).Assembly.Location;
        Console.WriteLine($"Backup: input A as a qcow2 source ({new FileInfo(source).Length >> 20} MiB); median of {runs} runs, taking turns.");
        Console.WriteLine($"{"line",-44} {"VDisk s",9} {"ref s",9} {"ratio",7}");
        void Fresh(bool withFull)
        {
            if (Directory.Exists(set)) Directory.Delete(set, recursive: true);
            if (withFull) Tools.Run("cp", "-r", pristineSet, set);
            File.Delete(output);
            Tools.Run("sync");
        }

        var (full, convert) = Tools.MedianPair(runs, () => Fresh(false),
            () => Tools.Run("dotnet", self, "backup-child", "backup", source, set),
            () => Tools.Run("dotnet", self, "backup-child", "convert", source, output));
        Print("full backup vs Convert-VDisk -Compress", full, convert, 1.0);
        var (_, qemu) = Tools.MedianPair(runs, () => Fresh(false), () => { }, () => Tools.Run("qemu-img", "convert", "-c", "-O", "qcow2", source, output));
        Print("full backup vs qemu-img convert -c", full, qemu, 1.0);

        var (incremental, _) = Tools.MedianPair(runs, () => Fresh(true),
            () => Tools.Run("dotnet", self, "backup-child", "backup", changedSource, set), () => { });
        var (read, write) = Tools.MedianPair(runs, () => Fresh(false),
            () => Tools.Run("sh", "-c", $"cat '{changedSource}' > /dev/null"),
            () => Tools.Run("qemu-img", "convert", "-c", "-O", "qcow2", changes, output));
        Print("incremental (hashes) vs read + write changes", incremental, read + write, 1.0);

        // The same path as the full backup's source, which the bitmap belongs to; a fresh marked copy before each run.
        var (bitmapped, _) = Tools.MedianPair(runs, () => { Fresh(true); Tools.Run("cp", "--sparse=always", pristineMarked, source); Tools.Run("sync"); },
            () => Tools.Run("dotnet", self, "backup-child", "backup", source, set), () => { });
        Print("incremental (bitmap) vs write changes", bitmapped, write, 1.5);
        Directory.Delete(pristineSet, recursive: true);
        Fresh(false);
        foreach (string file in new[] { source, changedSource, changes, pristineMarked }) File.Delete(file);
    }

    private static void Print(string line, double ours, double reference, double target) =>
        Console.WriteLine($"{line,-44} {ours,9:F3} {reference,9:F3} {ours / reference,7:F2}{(ours / reference > target ? "  (over target)" : "")}");

    // 256 writes of 1 MiB spread evenly over the disk by qemu-io, with the same bytes written once more into
    // `changes` (a plain file), so "writing the changes" can be timed on its own.
    private static void WriteScattered(string image, long size, string? changes)
    {
        long count = Changed / WriteSize, stride = size / count;
        var args = new List<string> { "-f", "qcow2" };
        var rawArgs = new List<string> { "-f", "raw" };
        for (long i = 0; i < count; i++)
        {
            args.AddRange(new[] { "-c", $"write -q -P {i % 251 + 1} {i * stride + stride / 3 / 65536 * 65536} {WriteSize}" });
            rawArgs.AddRange(new[] { "-c", $"write -q -P {i % 251 + 1} {i * WriteSize} {WriteSize}" });
        }
        args.Add(image);
        Tools.Run("qemu-io", args.ToArray());
        if (changes is null) return;
        Tools.Run("qemu-img", "create", "-q", "-f", "raw", changes, Changed.ToString());
        rawArgs.Add(changes);
        Tools.Run("qemu-io", rawArgs.ToArray());
    }
}
