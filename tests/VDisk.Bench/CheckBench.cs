// Check benchmark (issue 9): Test-VDisk's check of a qcow2 image beside qemu-img check, on (1) input A (4 GiB, 1.5 GiB of
// data) converted to qcow2 and (2) a 1 TiB sparse qcow2 with data scattered in 1 MiB pieces (20 GiB in the issue;
// the amount is an argument, since writing 20 GiB takes minutes and disk). VDisk runs in a child process, as a script
// would run it, and warm, as a cmdlet in a pwsh session; ratio = VDisk / qemu-img (target <= 1.0).
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.Bench;

internal static class CheckBench
{
    /// <summary>The child-process side: "check-child IMAGE".</summary>
    public static int Child(string[] args)
    {
        var result = CheckImage.Run(args[1]);
        return result.IsHealthy ? 0 : 2;
    }

    public static void Run(string folder, string inputA, int runs, long scatteredBytes)
    {
        string a = Path.Combine(folder, "check-a.qcow2");
        Tools.Run("qemu-img", "convert", "-O", "qcow2", inputA, a);
        string sparse = Path.Combine(folder, "check-1t.qcow2");
        WriteScattered(sparse, 1L << 40, scatteredBytes);
        Console.WriteLine($"Check (Test-VDisk / qemu-img check): median of {runs} runs, taking turns; ratio = VDisk / qemu-img (target <= 1.0).");
        Console.WriteLine($"{"line",-46} {"VDisk s",9} {"qemu s",9} {"ratio",7}");
        string self = typeof(CheckBench).Assembly.Location;
        foreach (var (line, image) in new[]
                 {
                     ("4 GiB image, 1.5 GiB of data", a),
                     ($"1 TiB sparse image, {scatteredBytes >> 30} GiB scattered", sparse),
                 })
        {
            var (ours, theirs) = Tools.MedianPair(runs, null,
                () => Tools.Run("dotnet", self, "check-child", image),
                () => Tools.Run("qemu-img", "check", "-q", image));
            Console.WriteLine($"{line,-46} {ours,9:F3} {theirs,9:F3} {ours / theirs,7:F2}");
            CheckImage.Run(image); // compiled and cached like a second cmdlet call in a session
            var (warm, _) = Tools.MedianPair(runs, null, () => CheckImage.Run(image), () => { });
            Console.WriteLine($"{line + " (warm)",-46} {warm,9:F3} {theirs,9:F3} {warm / theirs,7:F2}");
        }
        File.Delete(a);
        File.Delete(sparse);
    }

    // A qcow2 of `size` with `bytes` of data in 1 MiB pieces at pseudo-random 1 MiB-aligned guest offsets.
    private static void WriteScattered(string path, long size, long bytes)
    {
        Tools.Run("qemu-img", "create", "-q", "-f", "qcow2", path, size.ToString());
        var random = new Random(9);
        var piece = new byte[1 << 20];
        using var disk = ImageChain.Open(path, new OpenOptions { Writable = true, CacheMode = Engine.Storage.CacheMode.Unsafe });
        for (long written = 0; written < bytes; written += piece.Length)
        {
            random.NextBytes(piece.AsSpan(0, 4096));
            disk.Write(random.NextInt64(0, size >> 20) << 20, piece);
        }
    }
}
