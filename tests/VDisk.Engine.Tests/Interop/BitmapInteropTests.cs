// Persistent dirty bitmaps both ways with QEMU (qcow2.rst "Bitmaps"): bitmaps qemu-img makes and qemu-io dirties read
// back exactly; bitmaps VDisk adds are listed by qemu-img info, marked by qemu-io's writes, and merged and removed by
// qemu-img bitmap; removing and clearing leave qemu-img check clean (no leaks).
using System.Text.Json;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class BitmapInteropTests
{
    private const long Size = 24L << 20;

    // (offset, length) of qemu-io writes: granule edges, the first and last bytes, a run across data clusters.
    private static readonly (long Offset, long Length)[] WritesA = { (0, 1), (65535, 2), (5L << 20, 3L << 20), (Size - 1, 1) };
    private static readonly (long Offset, long Length)[] WritesB = { (1L << 20, 4096), (9L << 20, 512) };
    private static readonly (long Offset, long Length)[] WritesC = { (13L << 20, 70000) };

    [SkippableTheory]
    [InlineData(65536, 65536L, "")]
    [InlineData(512, 512L, "")]          // one 512-byte data cluster covers 2 MiB: the run spans data clusters
    [InlineData(4096, 4096L, "")]
    [InlineData(2097152, 1048576L, "")]
    [InlineData(65536, 65536L, "lazy_refcounts=on")]
    public void BitmapsQemuMakesReadBackExactly(int clusterSize, long granularity, string extra)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string img = dir.File("q.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}" + (extra == "" ? "" : "," + extra), img, Size.ToString());
        Qemu.Img("bitmap", "--add", "-g", granularity.ToString(), img, "all");
        Qemu.Img("bitmap", "--add", "-g", granularity.ToString(), img, "paused");
        Write(img, WritesA);
        Qemu.Img("bitmap", "--disable", img, "paused");
        Qemu.Img("bitmap", "--add", "-g", granularity.ToString(), img, "later");
        Write(img, WritesB);
        Qemu.Img("bitmap", "--enable", img, "paused");
        Qemu.Img("bitmap", "--add", "-g", granularity.ToString(), img, "cleared");
        Write(img, WritesC[..0]);
        Qemu.Img("bitmap", "--add", "-g", granularity.ToString(), "--disable", img, "merged");
        Qemu.Img("bitmap", "--merge", "later", img, "merged");
        Write(img, WritesC);
        Qemu.Img("bitmap", "--clear", img, "cleared");
        Qemu.Img("bitmap", "--add", "-g", "512", img, "fine"); // a different granularity from the others
        Write(img, WritesB[..1]);

        var listed = BitmapImage.List(img);
        Assert.Equal(new[] { "all", "paused", "later", "cleared", "merged", "fine" }, listed.Select(b => b.Name));
        Assert.All(listed, b => Assert.True(b.Consistent, b.Problem));
        Assert.False(listed.Single(b => b.Name == "merged").Enabled);
        Assert.True(listed.Single(b => b.Name == "all").Enabled);
        AssertMatchesQemuInfo(img, listed);

        Assert.Equal(Expected(granularity, WritesA, WritesB, WritesC), BitmapImage.Read(img, "all").ToList());
        Assert.Equal(Expected(granularity, WritesA, WritesC, WritesB[..1]), BitmapImage.Read(img, "paused").ToList());
        Assert.Equal(Expected(granularity, WritesB, WritesC), BitmapImage.Read(img, "later").ToList());
        Assert.Equal(Expected(granularity, WritesB[..1]), BitmapImage.Read(img, "cleared").ToList());
        Assert.Equal(Expected(granularity, WritesB), BitmapImage.Read(img, "merged").ToList());
        Assert.Equal(Expected(512, WritesB[..1]), BitmapImage.Read(img, "fine").ToList());
    }

    [SkippableTheory]
    [InlineData(65536, false)]
    [InlineData(512, false)]
    [InlineData(65536, true)]   // an overlay: the backing name moves out of the extension's way first
    [InlineData(4096, true)]
    public void BitmapsVDiskAddsAreListedMarkedMergedAndRemovedByQemu(int clusterSize, bool overlay)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string img = dir.File("v.qcow2");
        if (overlay)
        {
            Qemu.Img("create", "-q", "-f", "qcow2", dir.File("base.qcow2"), Size.ToString());
            Qemu.Io("-c", "write -P 0x5a 0 4M", dir.File("base.qcow2"));
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", "-b", "base.qcow2", "-F", "qcow2", img);
        }
        else Qemu.Img("create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", img, Size.ToString());
        string sha = ChainImages.Sha(img);

        var added = BitmapImage.Add(img, "backup", 65536);
        Assert.Equal(new Qcow2BitmapInfo("backup", 65536, Qcow2BitmapFlags.Auto, 1, true, null), added);
        BitmapImage.Add(img, "fine", 4096);
        Qemu.CheckClean(img);
        Assert.Equal(sha, ChainImages.Sha(img)); // the guest sees nothing new
        AssertMatchesQemuInfo(img, BitmapImage.List(img));
        Assert.Empty(BitmapImage.Read(img, "backup"));
        if (overlay) Assert.Equal("base.qcow2", Qemu.Info(img).GetProperty("backing-filename").GetString());

        Write(img, WritesA);
        Write(img, WritesB);
        Qemu.CheckClean(img);
        Assert.Equal(Expected(65536, WritesA, WritesB), BitmapImage.Read(img, "backup").ToList());
        Assert.Equal(Expected(4096, WritesA, WritesB), BitmapImage.Read(img, "fine").ToList());

        Qemu.Img("bitmap", "--add", img, "copy");
        Qemu.Img("bitmap", "--merge", "backup", img, "copy");
        Assert.Equal(Expected(65536, WritesA, WritesB), BitmapImage.Read(img, "copy").ToList());
        Qemu.Img("bitmap", "--remove", img, "backup");
        Qemu.CheckClean(img);
        Assert.Equal(new[] { "fine", "copy" }, BitmapImage.List(img).Select(b => b.Name));
    }

    [SkippableFact]
    public void RemovingAndClearingGiveBackEveryCluster()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string img = dir.File("r.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", img, Size.ToString());
        Qemu.Img("bitmap", "--add", "-g", "512", img, "a");
        Qemu.Img("bitmap", "--add", img, "b"); // QEMU's default granularity here: the 4 KiB cluster size
        BitmapImage.Add(img, "ours");
        Assert.Equal(4096, BitmapImage.List(img).Single(b => b.Name == "ours").Granularity);
        BitmapImage.Remove(img, "ours");
        Write(img, WritesA);
        long withData = new FileInfo(img).Length;

        var cleared = BitmapImage.Clear(img, "a");
        Assert.True(cleared.Consistent);
        Assert.Empty(BitmapImage.Read(img, "a"));
        Assert.Equal(Expected(4096, WritesA), BitmapImage.Read(img, "b").ToList());
        Qemu.CheckClean(img);
        Write(img, WritesB);
        Assert.Equal(Expected(512, WritesB), BitmapImage.Read(img, "a").ToList());

        BitmapImage.Remove(img, "a");
        Qemu.CheckClean(img);
        Assert.Equal(new[] { "b" }, BitmapImage.List(img).Select(b => b.Name));
        BitmapImage.Remove(img, "b");
        Qemu.CheckClean(img);
        Assert.Empty(BitmapImage.List(img));
        Assert.False(Qemu.Info(img).GetProperty("format-specific").GetProperty("data").TryGetProperty("bitmaps", out _));
        Qemu.Img("bitmap", "--add", img, "again"); // QEMU takes over an image whose last bitmap VDisk removed
        Qemu.CheckClean(img);
        Assert.True(new FileInfo(img).Length <= withData + 8 * 4096);
    }

    [SkippableFact]
    public void NamesAndGranularitiesQemuWouldRefuseAreRefused()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string img = dir.File("n.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", img, Size.ToString());
        BitmapImage.Add(img, "x");
        Assert.Equal(VDiskErrorKind.AlreadyExists, Assert.Throws<VDiskException>(() => BitmapImage.Add(img, "x")).Kind);
        Assert.Throws<VDiskException>(() => BitmapImage.Add(img, ""));
        Assert.Throws<VDiskException>(() => BitmapImage.Add(img, new string('n', 1024)));
        Assert.Throws<VDiskException>(() => BitmapImage.Add(img, "g", 256));
        Assert.Throws<VDiskException>(() => BitmapImage.Add(img, "g", 65536 + 512));
        Assert.Equal(VDiskErrorKind.NotFound, Assert.Throws<VDiskException>(() => BitmapImage.Remove(img, "nope")).Kind);
        string v2 = dir.File("v2.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", v2, Size.ToString());
        Assert.Equal(VDiskErrorKind.Unsupported, Assert.Throws<VDiskException>(() => BitmapImage.Add(v2, "x")).Kind);
        var (code, _) = Qemu.TryImg("bitmap", "--add", v2, "x");
        Assert.NotEqual(0, code); // qemu-img refuses too
        BitmapImage.Add(img, new string('n', 1023));
        Qemu.CheckClean(img);
        Assert.Equal(2, BitmapImage.List(img).Count);
    }

    // An image an older writer changed without knowing bitmaps: the extension is still there, the autoclear bit is not.
    // QEMU ignores such an extension (its clusters leak); VDisk lists nothing, and a new bitmap replaces it.
    [SkippableFact]
    public void AStaleExtensionWithoutTheAutoclearBitIsNeverTrustedAndIsReplacedByANewBitmap()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string img = dir.File("s.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", img, Size.ToString());
        Qemu.Img("bitmap", "--add", img, "stale");
        Write(img, WritesA);
        var bytes = File.ReadAllBytes(img);
        bytes[Qcow2Header.AutoclearOffset + 7] &= 0xfe;
        File.WriteAllBytes(img, bytes);
        Assert.Empty(BitmapImage.List(img));
        Assert.Contains("lacking bitmap support", Qemu.TryImg("info", img).Output); // QEMU does not trust it either

        BitmapImage.Add(img, "fresh");
        Assert.Equal(new[] { "fresh" }, BitmapImage.List(img).Select(b => b.Name));
        AssertMatchesQemuInfo(img, BitmapImage.List(img));
        Assert.True(CheckImage.Run(img, RepairMode.Leaks).LeaksFixed > 0); // the stale bitmap's clusters, as QEMU leaves them
        Qemu.CheckClean(img);
        Write(img, WritesB);
        Assert.Equal(Expected(65536, WritesB), BitmapImage.Read(img, "fresh").ToList());
    }

    internal static void Write(string img, IEnumerable<(long Offset, long Length)> writes)
    {
        var args = new List<string> { "-f", "qcow2" };
        foreach (var (offset, length) in writes) args.AddRange(new[] { "-c", $"write -P 0x{(offset & 0x7f) + 1:x2} {offset} {length}" });
        if (args.Count > 2) Qemu.Io(args.Append(img).ToArray());
    }

    /// <summary>The granule-aligned, merged ranges the writes dirty, clipped to the size.</summary>
    internal static List<DirtyRange> Expected(long granularity, params (long Offset, long Length)[][] writes)
    {
        var granules = new SortedSet<long>();
        foreach (var (offset, length) in writes.SelectMany(w => w))
            for (long g = offset / granularity; g <= (offset + length - 1) / granularity; g++) granules.Add(g);
        var ranges = new List<DirtyRange>();
        foreach (long g in granules)
        {
            long start = g * granularity, end = Math.Min(Size, start + granularity);
            if (ranges.Count > 0 && ranges[^1].Offset + ranges[^1].Length == start)
                ranges[^1] = ranges[^1] with { Length = end - ranges[^1].Offset };
            else ranges.Add(new DirtyRange(start, end - start));
        }
        return ranges;
    }

    /// <summary>qemu-img info's format-specific bitmaps say what VDisk lists: names, granularities and flags.</summary>
    internal static void AssertMatchesQemuInfo(string img, IReadOnlyList<Qcow2BitmapInfo> listed)
    {
        var data = Qemu.Info(img).GetProperty("format-specific").GetProperty("data");
        var qemu = data.TryGetProperty("bitmaps", out var b) ? b.EnumerateArray().ToList() : new List<JsonElement>();
        Assert.Equal(qemu.Count, listed.Count);
        for (int i = 0; i < qemu.Count; i++)
        {
            Assert.Equal(qemu[i].GetProperty("name").GetString(), listed[i].Name);
            Assert.Equal(qemu[i].GetProperty("granularity").GetInt64(), listed[i].Granularity);
            var flags = qemu[i].GetProperty("flags").EnumerateArray().Select(f => f.GetString()).ToHashSet();
            Assert.Equal(flags.Contains("auto"), listed[i].Enabled);
            Assert.Equal(flags.Contains("in-use"), listed[i].InUse);
        }
    }
}
