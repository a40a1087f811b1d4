// Get-VDiskMap's engine (issue 9 "Get-VDiskMap"): the ranges and flags must be exactly those of
// `qemu-img map --output=json` (start, length, depth, present, zero, data, offset) on images qemu-img and qemu-io made:
// sparse qcow2 with zero, discarded and compressed clusters, backing chains (raw and qcow2 bases, an overlay larger than
// its backing file), preallocated qcow2 (metadata, falloc, full), raw, VDI and VMDK.
using System.Text.Json;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class MapInteropTests
{
    private const long Size = 16 << 20;

    [SkippableTheory]
    [InlineData("qcow2", "")]
    [InlineData("qcow2", "cluster_size=4096")]
    [InlineData("qcow2", "compat=0.10")]
    [InlineData("qcow2", "preallocation=metadata")]
    [InlineData("qcow2", "preallocation=falloc")]
    [InlineData("qcow2", "preallocation=full")]
    [InlineData("raw", "")]
    [InlineData("vdi", "")]
    [InlineData("vdi", "static=on")]
    [InlineData("vmdk", "")]
    [InlineData("vmdk", "subformat=monolithicFlat")]
    [InlineData("vmdk", "subformat=twoGbMaxExtentSparse")]
    public void TheMapOfAWrittenImageIsQemuImgs(string format, string options)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("m." + format);
        var create = new List<string> { "create", "-q", "-f", format };
        if (options.Length > 0) create.AddRange(new[] { "-o", options });
        Qemu.Img(create.Concat(new[] { path, Size.ToString() }).ToArray());
        Qemu.Io("-f", format, "-t", "writeback", "-c", "write -P 0x11 0 64k", "-c", "write -P 0x22 1M 3M", "-c", "write -z 2M 512k",
            "-c", "discard 3M 256k", "-c", "write -P 0 5M 64k", "-c", $"write -P 0x33 {Size - 1536} 1536", path);
        AssertSameMap(path, format);
    }

    [SkippableFact]
    public void CompressedClustersAreDataWithoutAnOffset()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("c.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", path, Size.ToString());
        Qemu.Io("-c", "write -c -P 0x44 0 256k", "-c", "write -P 0x55 256k 64k", "-c", "write -c -P 0x66 1M 64k", path);
        var ranges = AssertSameMap(path, "qcow2");
        Assert.Contains(ranges, r => r.Compressed && r.Data && r.Offset is null && r.Start == 0 && r.Length == 256 << 10);
        Assert.DoesNotContain(ranges, r => r.Compressed && r.Offset != null);
        string stream = dir.File("c.vmdk");
        Qemu.Img("convert", "-O", "vmdk", "-o", "subformat=streamOptimized", path, stream);
        Assert.Contains(AssertSameMap(stream, "vmdk"), r => r.Compressed && r.Data && r.Offset is null);
    }

    [SkippableTheory]
    [InlineData(1, "qcow2")]
    [InlineData(3, "qcow2")]
    [InlineData(2, "raw")]
    public void ChainsGiveTheDepthOfTheLayerThatDecides(int depth, string baseFormat)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, depth, Size, baseFormat, clusterSize: 65536, seed: 40 + depth);
        var ranges = AssertSameMap(chain[^1], "qcow2");
        Assert.Contains(ranges, r => r.Depth == depth); // something shows through from the base
    }

    [SkippableFact]
    public void AnOverlayLargerThanItsBackingFileReadsZeroesPastItsEnd()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string base_ = dir.File("small.qcow2"), top = dir.File("big.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", base_, "4M");
        Qemu.Io("-c", "write -P 0x12 0 4M", base_);
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", "small.qcow2", "-F", "qcow2", top, Size.ToString());
        Qemu.Io("-c", "write -P 0x13 8M 64k", top);
        var ranges = AssertSameMap(top, "qcow2");
        Assert.Contains(ranges, r => r.Depth == 0 && !r.Present && r.Zero && r.Start == 4 << 20);
    }

    // Compares VDisk's map with qemu-img's, field by field, and returns VDisk's.
    private static List<MapRange> AssertSameMap(string path, string format)
    {
        var ours = MapImage.Run(path).ToList();
        using var doc = JsonDocument.Parse(Qemu.Img("map", "--output=json", "-f", format, path));
        var theirs = doc.RootElement.EnumerateArray().Select(e => (
            e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("depth").GetInt32(),
            e.GetProperty("present").GetBoolean(), e.GetProperty("zero").GetBoolean(), e.GetProperty("data").GetBoolean(),
            e.TryGetProperty("offset", out var o) ? o.GetInt64() : (long?)null)).ToList();
        var mine = ours.Select(r => (r.Start, r.Length, r.Depth, r.Present, r.Zero, r.Data, r.Offset)).ToList();
        Assert.Equal(theirs, mine);
        Assert.All(ours, r => Assert.Equal(r.Offset is null, r.File is null));
        return ours;
    }
}
