// Measure-VDisk's engine (issue 9 "Measure-VDisk"): the numbers of `qemu-img measure --output=json` (required,
// fully-allocated, bitmaps) for sources qemu-img and qemu-io made (sparse, compressed, chained, preallocated, raw, VDI,
// VMDK) and for sizes alone, for raw and qcow2 destinations with every qcow2 option measure reads (cluster size,
// refcount width, compat, preallocation, a backing file). VMDK and VDI destinations are refused, as qemu-img 7.2 refuses them.
using System.Text.Json;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class MeasureInteropTests
{
    private const long Size = 24 << 20;

    public static TheoryData<string> Destinations => new()
    {
        "raw", "qcow2", "qcow2:cluster_size=512", "qcow2:cluster_size=4096,refcount_bits=1", "qcow2:cluster_size=2M",
        "qcow2:compat=0.10", "qcow2:refcount_bits=64", "qcow2:preallocation=metadata", "qcow2:preallocation=falloc",
        "qcow2:preallocation=full", "qcow2:backing_file=x.qcow2",
    };

    [SkippableTheory]
    [MemberData(nameof(Destinations))]
    public void MeasuringEachKindOfSourceGivesQemuImgsNumbers(string destination)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var sources = new List<(string Path, string Format)>();
        string sparse = dir.File("sparse.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", sparse, Size.ToString());
        Qemu.Io("-c", "write -P 0x11 1000 3000", "-c", "write -P 0x12 70k 200k", "-c", "write -z 1M 1M", "-c", "write -c -P 0x13 3M 256k",
            "-c", $"write -P 0x14 {Size - 512} 512", sparse);
        sources.Add((sparse, "qcow2"));
        var chain = ChainImages.Build(dir, 2, Size, "raw", clusterSize: 65536, seed: 51);
        sources.Add((chain[^1], "qcow2"));
        sources.Add((chain[0], "raw"));
        string meta = dir.File("meta.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "preallocation=metadata", meta, Size.ToString());
        Qemu.Io("-c", "write -P 0x21 5M 1M", meta);
        sources.Add((meta, "qcow2"));
        string v2 = dir.File("v2.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", v2, (Size + 512).ToString());
        Qemu.Io("-c", "write -P 0x22 0 64k", v2);
        sources.Add((v2, "qcow2"));
        foreach (var other in new[] { "vdi", "vmdk" })
        {
            string path = dir.File("s." + other);
            Qemu.Img("create", "-q", "-f", other, path, Size.ToString());
            Qemu.Io("-f", other, "-c", "write -P 0x31 2M 3M", path);
            sources.Add((path, other));
        }

        var (format, options) = Parse(destination);
        foreach (var (path, sourceFormat) in sources)
        {
            var args = new List<string> { "measure", "--output=json", "-f", sourceFormat, "-O", format };
            if (destination.Contains(':')) args.AddRange(new[] { "-o", destination.Split(':')[1] });
            args.Add(path);
            var ours = MeasureImage.Run(path, null, options);
            AssertSame(Qemu.Img(args.ToArray()), ours, $"{Path.GetFileName(path)} -> {destination}");
        }
    }

    [SkippableTheory]
    [InlineData("raw", 20L << 30)]
    [InlineData("raw", 1000)]
    [InlineData("qcow2", 20L << 30)]
    [InlineData("qcow2:cluster_size=512", 1L << 30)]
    [InlineData("qcow2:preallocation=full", 5L << 30)]
    [InlineData("qcow2:refcount_bits=8,cluster_size=2M", 8L << 40)]
    [InlineData("qcow2", 0)]
    public void MeasuringASizeAloneGivesQemuImgsNumbers(string destination, long size)
    {
        Qemu.Require();
        var (format, options) = Parse(destination);
        var args = new List<string> { "measure", "--output=json", "--size", size.ToString(), "-O", format };
        if (destination.Contains(':')) args.AddRange(new[] { "-o", destination.Split(':')[1] });
        AssertSame(Qemu.Img(args.ToArray()), MeasureImage.Run(null, size, options), destination);
    }

    [SkippableTheory]
    [InlineData(ImageFormat.Vmdk, "vmdk")]
    [InlineData(ImageFormat.Vdi, "vdi")]
    public void VmdkAndVdiDestinationsAreRefusedAsQemuImgRefusesThem(ImageFormat format, string name)
    {
        Qemu.Require();
        var e = Assert.Throws<VDiskException>(() => MeasureImage.Run(null, 1 << 20, new MeasureOptions { DestinationFormat = format }));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        var (code, output) = Qemu.TryImg("measure", "--size", "1M", "-O", name);
        Assert.NotEqual(0, code);
        Assert.Contains("does not support size measurement", output);
    }

    // qemu-img counts persistent bitmaps' space; VDisk does not read bitmaps, so it refuses rather than answer 0.
    [SkippableFact]
    public void ASourceWithPersistentBitmapsIsRefusedForAQcow2Destination()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("b.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", path, Size.ToString());
        Qemu.Img("bitmap", "--add", path, "b0");
        using (var doc = JsonDocument.Parse(Qemu.Img("measure", "--output=json", "-O", "qcow2", path)))
            Assert.True(doc.RootElement.GetProperty("bitmaps").GetInt64() > 0);
        var e = Assert.Throws<VDiskException>(() => MeasureImage.Run(path, null, new MeasureOptions { DestinationFormat = ImageFormat.Qcow2 }));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        Assert.Equal(Size, MeasureImage.Run(path, null, new MeasureOptions()).RequiredBytes); // raw has no bitmaps to count
    }

    private static (string Format, MeasureOptions Options) Parse(string destination)
    {
        var parts = destination.Split(':');
        var options = new MeasureOptions { DestinationFormat = parts[0] == "raw" ? ImageFormat.Raw : ImageFormat.Qcow2 };
        foreach (var pair in parts.Length > 1 ? parts[1].Split(',') : Array.Empty<string>())
        {
            var (key, value) = (pair.Split('=')[0], pair.Split('=')[1]);
            options = key switch
            {
                "cluster_size" => options with { ClusterSize = value.EndsWith('M') ? int.Parse(value[..^1]) << 20 : int.Parse(value) },
                "refcount_bits" => options with { RefcountBits = int.Parse(value) },
                "compat" => options with { Compat = value },
                "preallocation" => options with { Preallocation = Enum.Parse<Preallocation>(value, ignoreCase: true) },
                "backing_file" => options with { HasBackingFile = true },
                _ => throw new ArgumentException(key),
            };
        }
        return (parts[0], options);
    }

    private static void AssertSame(string qemuJson, MeasureResult ours, string what)
    {
        using var doc = JsonDocument.Parse(qemuJson);
        var root = doc.RootElement;
        long? bitmaps = root.TryGetProperty("bitmaps", out var b) ? b.GetInt64() : null;
        Assert.True((root.GetProperty("required").GetInt64(), root.GetProperty("fully-allocated").GetInt64(), bitmaps)
            == (ours.RequiredBytes, ours.FullyAllocatedBytes, ours.BitmapsBytes), $"{what}: qemu-img says {qemuJson.ReplaceLineEndings(" ")}, VDisk {ours}");
    }
}
