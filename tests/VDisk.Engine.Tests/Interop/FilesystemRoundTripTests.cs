// A real filesystem survives: an ext4 image built by mkfs.ext4 -d converts raw -> qcow2 -> vmdk -> vdi
// -> raw (and through the compressed and stream variants) and comes back byte for byte, fsck-clean.
using System.Diagnostics;
using System.Security.Cryptography;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class FilesystemRoundTripTests
{
    [SkippableFact]
    public void Ext4SurvivesEveryFormat()
    {
        RequireE2fsprogs();
        using var dir = new TempFolder();
        string tree = dir.File("tree");
        var random = new Random(11);
        for (int i = 0; i < 60; i++)
        {
            string folder = Path.Combine(tree, $"d{i % 7}");
            Directory.CreateDirectory(folder);
            var content = new byte[random.Next(0, 300_000)];
            if (i % 3 == 0) random.NextBytes(content);
            else content.AsSpan().Fill((byte)('a' + i % 26));
            File.WriteAllBytes(Path.Combine(folder, $"f{i}.bin"), content);
        }
        string original = dir.File("fs.raw");
        Run("mkfs.ext4", "-q", "-F", "-d", tree, original, "64M");
        string expected = Hash(original);

        var steps = new (string Name, ConvertOptions Options)[]
        {
            ("fs.qcow2", new ConvertOptions { DestinationFormat = ImageFormat.Qcow2 }),
            ("fs.vmdk", new ConvertOptions { DestinationFormat = ImageFormat.Vmdk }),
            ("fs.vdi", new ConvertOptions { DestinationFormat = ImageFormat.Vdi }),
            ("fs-z.qcow2", new ConvertOptions { Compress = true, CompressionType = CompressionType.Zstd }),
            ("fs-stream.vmdk", new ConvertOptions { DestinationFormat = ImageFormat.Vmdk, Subformat = ImageSubformat.StreamOptimized }),
            ("fs-c.qcow2", new ConvertOptions { Compress = true }),
            ("fs-back.raw", new ConvertOptions { DestinationFormat = ImageFormat.Raw }),
        };
        string previous = original;
        foreach (var (name, options) in steps)
        {
            string next = dir.File(name);
            ConvertImage.Run(previous, next, options);
            previous = next;
        }
        Assert.Equal(expected, Hash(previous));
        Run("e2fsck", "-fn", previous);
    }

    private static void RequireE2fsprogs()
    {
        bool present = File.Exists("/sbin/mkfs.ext4") || File.Exists("/usr/sbin/mkfs.ext4");
        if (present) return;
        if (Qemu.InCi) Assert.Fail("mkfs.ext4/e2fsck are not installed, and CI=true: install e2fsprogs (.ci/run does).");
        Skip.If(true, "e2fsprogs not installed: filesystem round trip skipped.");
    }

    private static string Hash(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(f));
    }

    private static void Run(string tool, params string[] args)
    {
        string exe = File.Exists($"/sbin/{tool}") ? $"/sbin/{tool}" : $"/usr/sbin/{tool}";
        var psi = new ProcessStartInfo(exe) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"{tool} {string.Join(' ', args)} exited {p.ExitCode}: {output}");
    }
}
