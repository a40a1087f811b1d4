// Resize and map benchmarks (issue 9): growing a 1 TiB qcow2 image (to 2 TiB, its L1 table growing in place, and to
// 8 TiB, where it must move) and mapping input A (4 GiB, 1.5 GiB of data) as qcow2 and as raw, by VDisk (a child
// process, as a script would run it, and warm, as a cmdlet in a pwsh session) and by qemu-img resize / map
// --output=json, taking turns; ratio = VDisk / qemu-img (target <= 1.0).
using VDisk.Engine.Operations;

namespace VDisk.Bench;

internal static class ResizeMapBench
{
    /// <summary>The child-process side: "resize-child IMAGE SIZE" or "map-child IMAGE".</summary>
    public static int Child(string[] args)
    {
        if (args[0] == "resize-child") ResizeImage.Run(args[1], new ResizeOptions { Size = long.Parse(args[2]) });
        else Map(args[1]);
        return 0;
    }

    private static int Map(string image) => MapImage.Run(image).Count();

    public static void Run(string folder, string input, int runs)
    {
        string self = typeof(ResizeMapBench).Assembly.Location;
        Console.WriteLine($"Resize and map: median of {runs} runs, taking turns. Ratio = VDisk / qemu-img (target <= 1.0).");
        Console.WriteLine($"{"line",-42} {"VDisk s",9} {"qemu s",9} {"ratio",7}");
        string image = Path.Combine(folder, "resize.qcow2");
        foreach (var (line, size) in new[] { ("resize 1 TiB -> 2 TiB", 2L << 40), ("resize 1 TiB -> 8 TiB (L1 moves)", 8L << 40) })
        {
            Action prepare = () => Tools.Run("qemu-img", "create", "-q", "-f", "qcow2", image, "1T");
            var (ours, theirs) = Tools.MedianPair(runs, prepare,
                () => Tools.Run("dotnet", self, "resize-child", image, size.ToString()),
                () => Tools.Run("qemu-img", "resize", "-q", image, size.ToString()));
            Print(line, ours, theirs);
            prepare();
            ResizeImage.Run(image, new ResizeOptions { Size = size });
            var (warm, _) = Tools.MedianPair(runs, prepare, () => ResizeImage.Run(image, new ResizeOptions { Size = size }), () => { });
            Print(line + " (warm)", warm, theirs);
        }
        File.Delete(image);

        string qcow2 = Path.Combine(folder, "map.qcow2");
        Tools.Run("qemu-img", "convert", "-O", "qcow2", input, qcow2);
        foreach (var (line, path, format) in new[] { ("map A as qcow2", qcow2, "qcow2"), ("map A as raw", input, "raw") })
        {
            var (ours, theirs) = Tools.MedianPair(runs, null,
                () => Tools.Run("dotnet", self, "map-child", path),
                () => Tools.Run("qemu-img", "map", "--output=json", "-f", format, path));
            Print(line, ours, theirs);
            Map(path);
            var (warm, _) = Tools.MedianPair(runs, null, () => Map(path), () => { });
            Print(line + " (warm)", warm, theirs);
        }
        File.Delete(qcow2);
    }

    private static void Print(string line, double ours, double theirs) => Console.WriteLine($"{line,-42} {ours,9:F3} {theirs,9:F3} {ours / theirs,7:F2}");
}
