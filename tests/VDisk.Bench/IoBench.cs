// Issue "Foundation" benchmark: sequential 1 MiB and strided ("random") 4 KiB reads and writes through
// the engine and through `qemu-img bench` on the same files in the same run, queue depth 1, writeback.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.Bench;

internal static class IoBench
{
    private const long ImageSize = 1L << 30;
    private const int SequentialBlock = 1 << 20;
    private const int RandomBlock = 4096;
    private const int RandomCount = 40_000;
    private const long Stride = (1 << 20) + 4096; // co-prime with the image size in 4 KiB units: every op hits a new block

    public static List<(string Line, double Ours, double Qemu)> Run(string folder, int runs)
    {
        var results = new List<(string, double, double)>();
        foreach (var format in new[] { "raw", "qcow2" })
        {
            string fresh = Path.Combine(folder, $"fresh.{format}");
            string full = Path.Combine(folder, $"full.{format}");
            void Create(string path) { File.Delete(path); Tools.Run("qemu-img", "create", "-q", "-f", format, path, ImageSize.ToString()); Tools.Run("sync"); }

            void Line(string name, Action? prepare, bool write, int block, int count, long step, string path)
            {
                var (ours, qemu) = Tools.MedianPair(runs, prepare, () => Engine(path, write, block, count, step), () => Qemu(path, format, write, block, count, step));
                results.Add(($"{format} {name}", ours, qemu));
            }
            int sequentialCount = (int)(ImageSize / SequentialBlock);
            Line("sequential 1 MiB write", () => Create(fresh), true, SequentialBlock, sequentialCount, SequentialBlock, fresh);
            Create(full);
            Engine(full, write: true, SequentialBlock, sequentialCount, SequentialBlock);
            Line("sequential 1 MiB read", null, false, SequentialBlock, sequentialCount, SequentialBlock, full);
            Line("random 4 KiB write (new image)", () => Create(fresh), true, RandomBlock, RandomCount, Stride, fresh);
            Line("random 4 KiB write (allocated)", null, true, RandomBlock, RandomCount, Stride, full);
            Line("random 4 KiB read", null, false, RandomBlock, RandomCount, Stride, full);
            File.Delete(fresh);
            File.Delete(full);
        }
        return results;
    }

    // The same pattern qemu-img bench uses: offset advances by `step` and wraps at the image size.
    private static void Engine(string path, bool write, int block, int count, long step)
    {
        using var disk = ImageChain.Open(path, new OpenOptions { Writable = write });
        var buffer = new byte[block];
        buffer.AsSpan().Fill(0xa5);
        long offset = 0;
        for (int i = 0; i < count; i++)
        {
            if (write) disk.Write(offset, buffer);
            else disk.Read(offset, buffer);
            offset = (offset + step) % disk.Length;
        }
    }

    private static void Qemu(string path, string format, bool write, int block, int count, long step)
    {
        var args = new List<string> { "bench", "-q", "-f", format, "-t", "writeback", "-d", "1", "-c", count.ToString(),
            "-s", block.ToString(), "-S", step.ToString() };
        if (write) args.AddRange(new[] { "-w", "--pattern=165" });
        args.Add(path);
        Tools.Run("qemu-img", args.ToArray());
    }

    /// <summary>Opens a 1 TiB sparse qcow2 with scattered data, reads it and walks its whole map; returns the peak managed heap in bytes.</summary>
    public static long TerabyteHeapPeak(string folder)
    {
        string path = Path.Combine(folder, "huge.qcow2");
        const long size = 1L << 40;
        Tools.Run("qemu-img", "create", "-q", "-f", "qcow2", path, size.ToString());
        var commands = new List<string> { "-f", "qcow2", "-t", "writeback" };
        for (long i = 0; i < 2000; i++) { commands.Add("-c"); commands.Add($"write -P 0x5a {i * (size / 2000) / 65536 * 65536} 65536"); }
        commands.Add(path);
        Tools.Run("qemu-io", commands.ToArray());
        GC.Collect();
        long baseline = GC.GetTotalMemory(true), peak = 0;
        using (var disk = ImageChain.Open(path))
        {
            var buffer = new byte[65536];
            for (long i = 0; i < 2000; i++)
            {
                disk.Read(i * (size / 2000) / 65536 * 65536, buffer);
                peak = Math.Max(peak, GC.GetTotalMemory(false));
            }
            long allocated = InspectImage.AllocatedBytes(disk.Driver);
            peak = Math.Max(peak, GC.GetTotalMemory(false));
            if (allocated != 2000L * 65536) throw new InvalidOperationException($"expected {2000L * 65536} allocated bytes, found {allocated}");
        }
        File.Delete(path);
        return peak - baseline;
    }
}
