// Backing chains for the commit, pull and rebase tests, written by the reference tools: qemu-img creates each
// overlay on the previous layer (relative names, recorded formats) and qemu-io writes data at scattered offsets
// into every layer, plus zero writes over data of the layers beneath. Guest content is compared as qemu-img sees
// it: the SHA-256 of `qemu-img convert -O raw`.
using System.Security.Cryptography;

namespace VDisk.Engine.Tests.Support;

public static class ChainImages
{
    /// <summary>
    /// base (qcow2 or raw) and <paramref name="depth"/> qcow2 overlays L1..Ln in <paramref name="dir"/>, each backed by
    /// the one before; returns the paths, base first, top last.
    /// </summary>
    public static List<string> Build(TempFolder dir, int depth, long size = 8 << 20, string baseFormat = "qcow2", int clusterSize = 65536, int seed = 1)
    {
        var paths = new List<string> { dir.File("base." + baseFormat) };
        Qemu.Img("create", "-q", "-f", baseFormat, paths[0], size.ToString());
        Scatter(paths[0], baseFormat, seed, 12, size, zeroes: false);
        for (int i = 1; i <= depth; i++)
        {
            string layer = dir.File($"L{i}.qcow2");
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", "-b", Path.GetFileName(paths[^1]),
                "-F", i == 1 ? baseFormat : "qcow2", layer);
            Scatter(layer, "qcow2", seed * 100 + i, 6, size, zeroes: true);
            paths.Add(layer);
        }
        return paths;
    }

    /// <summary>qemu-io writes of distinct patterns at <paramref name="writes"/> offsets, and zero writes when asked.</summary>
    public static void Scatter(string image, string format, int seed, int writes, long size, bool zeroes)
    {
        var random = new Random(seed);
        var args = new List<string> { "-f", format, "-t", "writeback" };
        for (int i = 0; i < writes; i++)
        {
            long length = 512L * random.Next(1, 400);
            long offset = random.NextInt64((size - length) / 512) * 512;
            args.Add("-c");
            args.Add(zeroes && i % 3 == 2 ? $"write -z {offset} {length}" : $"write -P 0x{random.Next(1, 256):x2} {offset} {length}");
        }
        args.Add("-c");
        args.Add($"write -P 0x{(seed & 0x7f) + 1:x2} {size - 4096} 4096"); // the last cluster too
        args.Add(image);
        Qemu.Io(args.ToArray());
    }

    /// <summary>SHA-256 (hex) of what qemu-img reads as the guest content of <paramref name="image"/>.</summary>
    public static string Sha(string image)
    {
        string raw = image + ".sha.raw";
        try
        {
            Qemu.Img("convert", "-U", "-O", "raw", image, raw);
            using var stream = File.OpenRead(raw);
            return Convert.ToHexString(SHA256.HashData(stream));
        }
        finally
        {
            File.Delete(raw);
        }
    }

    /// <summary>The backing chain as `qemu-img info --backing-chain` lists it: (filename, format, backing filename) per layer.</summary>
    public static List<(string File, string Format, string? Backing)> QemuChain(string image)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(Qemu.Img("info", "-U", "--backing-chain", "--output=json", image));
        return doc.RootElement.EnumerateArray().Select(e => (
            e.GetProperty("filename").GetString()!,
            e.GetProperty("format").GetString()!,
            e.TryGetProperty("backing-filename", out var b) ? b.GetString() : null)).ToList();
    }
}
