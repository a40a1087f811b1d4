// Backing-chain benchmark (issue 8 "Performance"): commit of an overlay holding 256 MiB of scattered writes into a
// 4 GiB qcow2 base holding input A's 1.5 GiB, and pull (flatten: qemu-img rebase -b "") of that overlay, which copies
// the base's data up. VDisk runs in a child process (as a script runs it) and warm (as a cmdlet in a pwsh session);
// qemu-img commit -d / rebase -b "" run on identical fresh copies, taking turns; ratio = VDisk / qemu-img (target <= 1.0).
using VDisk.Engine.Operations;

namespace VDisk.Bench;

internal static class ChainBench
{
    private const long OverlayData = 256L << 20, WriteSize = 1L << 20;

    /// <summary>The child-process side: "chain-child commit|pull TOP".</summary>
    public static int Child(string[] args)
    {
        Run(args[1], args[2]);
        return 0;
    }

    private static void Run(string verb, string top)
    {
        if (verb == "commit") CommitImage.Run(top, new CommitOptions { KeepOverlays = true });
        else RebaseImage.Run(top, new RebaseOptions());
    }

    public static void Run(string folder, string input, int runs)
    {
        string pristineBase = Path.Combine(folder, "pristine-base.qcow2"), pristineTop = Path.Combine(folder, "pristine-top.qcow2");
        string baseImage = Path.Combine(folder, "base.qcow2"), top = Path.Combine(folder, "top.qcow2");
        Tools.Run("qemu-img", "convert", "-O", "qcow2", input, pristineBase);
        File.Copy(pristineBase, baseImage, overwrite: true);
        Tools.Run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top);
        WriteScattered(top, new FileInfo(input).Length);
        File.Move(top, pristineTop);
        string self = typeof(ChainBench).Assembly.Location;
        Console.WriteLine($"Chains: a {OverlayData >> 20} MiB overlay over a {new FileInfo(input).Length >> 30} GiB qcow2 base holding " +
            $"{new FileInfo(pristineBase).Length >> 20} MiB; median of {runs} runs, taking turns on fresh copies.");
        Console.WriteLine($"{"line",-22} {"VDisk s",9} {"qemu s",9} {"ratio",7}");
        Action fresh = () =>
        {
            Tools.Run("cp", "--sparse=always", pristineBase, baseImage);
            Tools.Run("cp", "--sparse=always", pristineTop, top);
            Tools.Run("sync"); // else the timed flush would write back the copies too
        };
        foreach (var (line, verb, qemu) in new[]
        {
            ("commit", "commit", new[] { "commit", "-q", "-d", top }),
            ("pull (flatten)", "pull", new[] { "rebase", "-q", "-b", "", top }),
        })
        {
            var (ours, theirs) = Tools.MedianPair(runs, fresh,
                () => Tools.Run("dotnet", self, "chain-child", verb, top),
                () => Tools.Run("qemu-img", qemu));
            Console.WriteLine($"{line,-22} {ours,9:F3} {theirs,9:F3} {ours / theirs,7:F2}");
            fresh();
            Run(verb, top); // compiles the code paths untimed, as a session that ran the cmdlet before has
            var (warm, _) = Tools.MedianPair(runs, fresh, () => Run(verb, top), () => { });
            Console.WriteLine($"{line + " (warm)",-22} {warm,9:F3} {theirs,9:F3} {warm / theirs,7:F2}");
        }
        foreach (string file in new[] { pristineBase, pristineTop, baseImage, top }) File.Delete(file);
    }

    // 256 writes of 1 MiB spread evenly over the disk, by qemu-io in one process, so the overlay's clusters lie as a
    // guest's scattered writes leave them.
    private static void WriteScattered(string image, long size)
    {
        long count = OverlayData / WriteSize, stride = size / count;
        var args = new List<string> { "-f", "qcow2" };
        for (long i = 0; i < count; i++) args.AddRange(new[] { "-c", $"write -q -P {i % 251 + 1} {i * stride + stride / 3 / 65536 * 65536} {WriteSize}" });
        args.Add(image);
        Tools.Run("qemu-io", args.ToArray());
    }
}
