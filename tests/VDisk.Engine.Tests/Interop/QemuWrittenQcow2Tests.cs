// Images qemu-img creates and qemu-io writes (every option combination we claim) read back byte for
// byte through the engine, compared with qemu-img's own conversion to raw.
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class QemuWrittenQcow2Tests
{
    private const long Size = 48L << 20;

    // Scattered writes: cluster boundaries for every cluster size, the first and last bytes, a large run.
    private static readonly string[] Writes =
    {
        "write -P 0x11 0 1",
        "write -P 0x22 511 2",
        "write -P 0x33 4095 4098",
        "write -P 0x44 65535 131074",
        "write -P 0x55 2097151 3",
        "write -P 0x66 10M 3M",
        "write -P 0x77 47M 1M",
        "write -z 10M 64k",
        "write -P 0x88 20000000 777",
    };

    public static TheoryData<string> CreateOptions => new()
    {
        "compat=0.10",
        "compat=1.1",
        "cluster_size=512",
        "cluster_size=4096",
        "cluster_size=65536",
        "cluster_size=2M",
        "refcount_bits=1",
        "refcount_bits=16",
        "refcount_bits=64",
        "lazy_refcounts=on",
        "preallocation=metadata",
        "preallocation=falloc",
        "preallocation=full",
        "compat=0.10,cluster_size=4096,preallocation=metadata",
    };

    [SkippableTheory]
    [MemberData(nameof(CreateOptions))]
    public void ReadsWhatQemuWrote(string options)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = dir.File("q.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", options, image, Size.ToString());
        WriteWithQemuIo(image, "qcow2", Writes);
        AssertEngineMatchesQemu(dir, image);
    }

    [SkippableFact]
    public void ReadsOverlayThroughBackingFile()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string baseImage = dir.File("base.qcow2"), overlay = dir.File("overlay.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", baseImage, Size.ToString());
        WriteWithQemuIo(baseImage, "qcow2", Writes);
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", overlay);
        WriteWithQemuIo(overlay, "qcow2", "write -P 0xa1 4000 200", "write -P 0xa2 10M 100", "write -z 47M 4096", "discard 65536 65536");
        AssertEngineMatchesQemu(dir, overlay);
    }

    [SkippableFact]
    public void ReadsRawBackingFile()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string baseImage = dir.File("base.img"), overlay = dir.File("overlay.qcow2");
        File.WriteAllBytes(baseImage, Images.Pattern(3 << 20, 5));
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", baseImage, "-F", "raw", overlay, Size.ToString());
        WriteWithQemuIo(overlay, "qcow2", "write -P 0xa1 1M 5000", "write -P 0xa2 40M 100");
        AssertEngineMatchesQemu(dir, overlay);
    }

    [SkippableTheory]
    [InlineData("zlib", "65536")]
    [InlineData("zstd", "65536")]
    [InlineData("zlib", "4096")]
    [InlineData("zstd", "2M")]
    public void ReadsCompressedClusters(string compression, string clusterSize)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("source.raw"), image = dir.File("c.qcow2");
        var bytes = new byte[Size];
        var random = new Random(42);
        for (int i = 0; i < 200; i++)
        {
            int at = random.Next(0, (int)Size - 200_000);
            var text = System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat($"line {i} of compressible text; ", 3000)));
            text.AsSpan(0, random.Next(1, text.Length)).CopyTo(bytes.AsSpan(at));
        }
        random.NextBytes(bytes.AsSpan(30 << 20, 1 << 20)); // incompressible: stored uncompressed
        File.WriteAllBytes(source, bytes);
        Qemu.Img("convert", "-c", "-f", "raw", "-O", "qcow2", "-o", $"compression_type={compression},cluster_size={clusterSize}", source, image);
        using var disk = Images.OpenReadOnly(image);
        Assert.Equal(bytes, Images.ReadAll(disk));
    }

    internal static void WriteWithQemuIo(string image, string format, params string[] commands)
    {
        var args = new List<string> { "-f", format, "-t", "writeback" };
        foreach (var c in commands) { args.Add("-c"); args.Add(c); }
        args.Add(image);
        Qemu.Io(args.ToArray());
    }

    private static void AssertEngineMatchesQemu(TempFolder dir, string image)
    {
        string expected = dir.File("expected.raw");
        Qemu.Img("convert", "-O", "raw", image, expected);
        using var disk = Images.OpenReadOnly(image);
        var ours = Images.ReadAll(disk);
        var theirs = File.ReadAllBytes(expected);
        Assert.Equal(theirs.Length, ours.Length);
        int first = ours.AsSpan().CommonPrefixLength(theirs);
        Assert.True(first == ours.Length, $"first difference at byte {first}");
    }
}
