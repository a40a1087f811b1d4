// Snapshot benchmark (issue 8): creating and deleting an internal snapshot of a qcow2 image holding input A's
// 1.5 GiB of data, by VDisk (a child process, as a script would run it, and warm, as a cmdlet in a pwsh session)
// and by qemu-img snapshot -c / -d, taking turns on the same image; ratio = VDisk / qemu-img (target <= 1.0).
using VDisk.Engine.Operations;

namespace VDisk.Bench;

internal static class SnapshotBench
{
    /// <summary>The child-process side: "snapshot-child create|delete IMAGE NAME".</summary>
    public static int Child(string[] args)
    {
        Run(args[1], args[2], args[3]);
        return 0;
    }

    private static void Run(string verb, string image, string name = "ours")
    {
        if (verb == "create") SnapshotImage.Create(image, name);
        else SnapshotImage.Delete(image, SnapshotImage.List(image).Single(s => s.Name == name).Id);
    }

    public static void Run(string folder, string input, int runs)
    {
        string image = Path.Combine(folder, "snapshots.qcow2");
        Tools.Run("qemu-img", "convert", "-O", "qcow2", input, image);
        string self = typeof(SnapshotBench).Assembly.Location;
        Console.WriteLine($"Snapshots of a qcow2 image holding {new FileInfo(image).Length >> 20} MiB: median of {runs} runs, taking turns.");
        Console.WriteLine($"{"line",-22} {"VDisk s",9} {"qemu s",9} {"ratio",7}");
        foreach (var (line, verb, qemuFlag) in new[] { ("snapshot create", "create", "-c"), ("snapshot delete", "delete", "-d") })
        {
            // Untimed before each timing: no snapshots (create), or both snapshots to delete (delete).
            Action prepare = () =>
            {
                foreach (var s in SnapshotImage.List(image)) SnapshotImage.Delete(image, s.Id);
                if (verb != "delete") return;
                Tools.Run("qemu-img", "snapshot", "-c", "ours", image);
                Tools.Run("qemu-img", "snapshot", "-c", "theirs", image);
            };
            var (ours, theirs) = Tools.MedianPair(runs, prepare,
                () => Tools.Run("dotnet", self, "snapshot-child", verb, image, "ours"),
                () => Tools.Run("qemu-img", "snapshot", qemuFlag, "theirs", image));
            Console.WriteLine($"{line,-22} {ours,9:F3} {theirs,9:F3} {ours / theirs,7:F2}");
            // The same work in a warm process, as a cmdlet runs in a pwsh session (no runtime start, code already compiled).
            prepare();
            Run(verb, image);
            var (warm, _) = Tools.MedianPair(runs, prepare, () => Run(verb, image), () => { });
            Console.WriteLine($"{line + " (warm)",-22} {warm,9:F3} {theirs,9:F3} {warm / theirs,7:F2}");
        }
        File.Delete(image);
    }
}
