// Resize (issue 9 "Resize-VDisk"): images qemu-img made and qemu-io filled are grown and shrunk by VDisk; qemu-img
// check must call them clean (no leaks), qemu-img info must give the new size, the guest content below the smaller
// size must be unchanged (SHA-256 of what qemu-img reads) and the rest must read as zeroes. The qcow2 L1 table grows
// in place when its clusters have room and moves when they do not; refusals match qemu-img's.
using System.Security.Cryptography;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class ResizeInteropTests
{
    private const long Old = 24 << 20;

    [SkippableTheory]
    [InlineData("qcow2", 48L << 20, Preallocation.Off)]
    [InlineData("qcow2", 48L << 20, Preallocation.Metadata)]
    [InlineData("qcow2", 48L << 20, Preallocation.Falloc)]
    [InlineData("qcow2", 48L << 20, Preallocation.Full)]
    [InlineData("qcow2", 10L << 20, Preallocation.Off)]
    [InlineData("qcow2", (24L << 20) + 1536, Preallocation.Off)]
    [InlineData("raw", 48L << 20, Preallocation.Off)]
    [InlineData("raw", 48L << 20, Preallocation.Falloc)]
    [InlineData("raw", 48L << 20, Preallocation.Full)]
    [InlineData("raw", (10L << 20) + 7, Preallocation.Off)]
    [InlineData("vdi", 48L << 20, Preallocation.Off)]
    [InlineData("vdi", 48L << 20, Preallocation.Full)]
    [InlineData("vdi", 48L << 20, Preallocation.Metadata)]
    [InlineData("vdi", 10L << 20, Preallocation.Off)]
    public void ResizedImagesCheckCleanKeepTheirDataAndReadZeroesBeyond(string format, long size, Preallocation prealloc)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("a." + format);
        Qemu.Img("create", "-q", "-f", format, path, Old.ToString());
        ChainImages.Scatter(path, format, seed: 7, writes: 30, Old, zeroes: format == "qcow2");
        var before = Guest(path, format);

        var result = ResizeImage.Run(path, new ResizeOptions { Size = size, Shrink = size < Old, Preallocation = prealloc });

        Assert.Equal((Old, size), (result.OldSize, result.NewSize));
        AssertResized(path, format, before, size);
    }

    [SkippableFact]
    public void AStaticVdiGrowsWithAllocatedBlocksAndShrinksDense()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("s.vdi");
        Qemu.Img("create", "-q", "-f", "vdi", "-o", "static=on", path, Old.ToString());
        ChainImages.Scatter(path, "vdi", seed: 8, writes: 20, Old, zeroes: false);
        var before = Guest(path, "vdi");
        ResizeImage.Run(path, new ResizeOptions { Size = 40 << 20 });
        AssertResized(path, "vdi", before, 40 << 20);
        using (var map = System.Text.Json.JsonDocument.Parse(Qemu.Img("map", "--output=json", "-f", "vdi", path)))
            Assert.All(map.RootElement.EnumerateArray(), r => Assert.True(r.GetProperty("data").GetBoolean(), "a static image has every block allocated"));
        ResizeImage.Run(path, new ResizeOptions { Size = 5 << 20, Shrink = true });
        AssertResized(path, "vdi", before, 5 << 20);
    }

    // qemu-img made the map one sector (128 blocks) long with the data right after it: growing past 128 MiB moves the
    // map over the first data blocks, which move to the end of the file.
    [SkippableTheory]
    [InlineData(false, 1L << 30, Preallocation.Off)]          // 4 KiB map: one data block given up
    [InlineData(false, (1L << 30) + (5L << 20), Preallocation.Full)]
    [InlineData(false, 300L << 30, Preallocation.Off)]        // 1.2 MiB map: two data blocks given up
    [InlineData(true, 300L << 20, Preallocation.Off)]         // static: 24 blocks, every one allocated, the first moves
    public void AVdiGrowsPastItsBlockMapByMovingTheFirstDataBlocks(bool isStatic, long size, Preallocation prealloc)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("g.vdi");
        Qemu.Img("create", "-q", "-f", "vdi", "-o", $"static={(isStatic ? "on" : "off")}", path, Old.ToString());
        ChainImages.Scatter(path, "vdi", seed: 11, writes: 30, Old, zeroes: false);
        Qemu.Io("-c", "write -P 0x3c 0 64k", path); // guest block 0 holds data block 0 at the latest
        var before = Guest(path, "vdi");
        var (mapBefore, dataBefore) = VdiOffsets(path);

        ResizeImage.Run(path, new ResizeOptions { Size = size, Preallocation = prealloc });

        var (map, data) = VdiOffsets(path);
        Assert.Equal(dataBefore, map);                                   // the new map took the first data block(s)
        Assert.True(data - dataBefore >= (size >> 20) * 4 && (data - dataBefore) % (1 << 20) == 0, $"offset_data {data}");
        Assert.NotEqual(mapBefore, map);
        if (size <= 2L << 30) AssertResized(path, "vdi", before, size);
        else AssertGrownSparse(path, before, size);
        // qemu-io writes into the new area and over the moved block; VDisk reads both back.
        Qemu.Io("-c", $"write -P 0x6d {size - (3L << 20)} 2M", "-c", "write -P 0x4e 4k 8k", path);
        Qemu.CheckClean(path);
        using var disk = Images.OpenReadOnly(path);
        Assert.Equal(size, disk.Length);
        var back = new byte[2 << 20];
        disk.Read(size - (3L << 20), back);
        Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0x6d) < 0, "qemu-io's write in the new area");
        var head = new byte[64 << 10];
        disk.Read(0, head);
        Assert.True(head.AsSpan(0, 4096).IndexOfAnyExcept((byte)0x3c) < 0 && head.AsSpan(4096, 8192).IndexOfAnyExcept((byte)0x4e) < 0
            && head.AsSpan(12288).IndexOfAnyExcept((byte)0x3c) < 0, "the moved first block, rewritten in part by qemu-io");
    }

    // Too large to read whole: qemu-img check, its size, the old content, and no data past it in qemu-img map.
    private static void AssertGrownSparse(string path, byte[] before, long size)
    {
        Qemu.CheckClean(path);
        Assert.Equal(size, Qemu.Info(path).GetProperty("virtual-size").GetInt64());
        Assert.Equal(Sha(before), Sha(Guest(path, "vdi", before.Length)));
        using var map = System.Text.Json.JsonDocument.Parse(Qemu.Img("map", "--output=json", "-f", "vdi", path));
        Assert.All(map.RootElement.EnumerateArray().Where(r => r.GetProperty("start").GetInt64() >= before.Length),
            r => Assert.False(r.GetProperty("data").GetBoolean(), $"data past the old end at {r.GetProperty("start")}"));
    }

    // Flat VMDK grows: the extent file first, then the descriptor's extent line and cylinders. qemu-img must see the
    // new size, call it clean, read the old data unchanged and zeroes beyond, and qemu-io's writes there read back.
    [SkippableTheory]
    [InlineData("monolithicFlat", 48L << 20, Preallocation.Off)]
    [InlineData("monolithicFlat", 48L << 20, Preallocation.Full)]
    [InlineData("twoGbMaxExtentFlat", 40L << 20, Preallocation.Falloc)]
    public void AFlatVmdkGrows(string subformat, long size, Preallocation prealloc)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("f.vmdk");
        Qemu.Img("create", "-q", "-f", "vmdk", "-o", $"subformat={subformat}", path, Old.ToString());
        ChainImages.Scatter(path, "vmdk", seed: 12, writes: 20, Old, zeroes: false);
        var before = Guest(path, "vmdk");

        ResizeImage.Run(path, new ResizeOptions { Size = size, Preallocation = prealloc });

        AssertResized(path, "vmdk", before, size);
        string descriptor = File.ReadAllText(path);
        Assert.Contains($"ddb.geometry.cylinders = \"{size / (63 * 16 * 512)}\"", descriptor);
        Qemu.Io("-c", $"write -P 0x6d {size - (2L << 20)} 1M", path);
        Qemu.CheckClean(path);
        using var disk = Images.OpenReadOnly(path);
        Assert.Equal(size, disk.Length);
        var back = new byte[1 << 20];
        disk.Read(size - (2L << 20), back);
        Assert.True(back.AsSpan().IndexOfAnyExcept((byte)0x6d) < 0, "qemu-io's write in the new area");
    }

    [SkippableTheory]
    [InlineData("monolithicSparse", 48L << 20, "monolithicSparse")]
    [InlineData("streamOptimized", 48L << 20, "streamOptimized")]
    [InlineData("twoGbMaxExtentSparse", 48L << 20, "twoGbMaxExtentSparse")]
    [InlineData("twoGbMaxExtentFlat", 3L << 30, "2147483648-byte extents")]
    [InlineData("monolithicFlat", 8L << 20, "monolithicFlat")] // shrink
    public void OtherVmdkResizesAreRefusedNamingTheSubformat(string subformat, long size, string named)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("r.vmdk");
        Qemu.Img("create", "-q", "-f", "vmdk", "-o", $"subformat={subformat}", path, Old.ToString());
        Qemu.Io("-c", "write -P 0x21 0 1M", path);
        var before = Sha(Guest(path, "vmdk"));
        var e = Assert.Throws<VDiskException>(() => ResizeImage.Run(path, new ResizeOptions { Size = size, Shrink = size < Old }));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        Assert.True(e.Message.Contains(named), e.Message);
        Assert.Equal(Old, Qemu.Info(path).GetProperty("virtual-size").GetInt64());
        Assert.Equal(before, Sha(Guest(path, "vmdk")));
    }

    private static (long Map, long Data) VdiOffsets(string path)
    {
        var sector = new byte[512];
        using (var f = File.OpenRead(path)) f.ReadExactly(sector);
        return (BitConverter.ToUInt32(sector, 0x154), BitConverter.ToUInt32(sector, 0x158));
    }

    [SkippableTheory]
    [InlineData(512, 1L << 20, 64L << 20, true)]      // 32 L1 entries in one 512-byte cluster; 2048 need 32 clusters
    [InlineData(512, 1L << 20, 2L << 20, false)]      // 32 entries grow to 64, the most one 512-byte cluster holds
    [InlineData(4096, 8L << 20, 64L << 20, false)]    // 4 entries grow to 32 inside the table's one cluster
    [InlineData(4096, 8L << 20, 1536L << 20, true)]   // 768 entries, 6 KiB: past the 4 KiB cluster
    public void TheL1TableGrowsInPlaceWhenItFitsAndMovesWhenItDoesNot(int clusterSize, long old, long size, bool moves)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("l1.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", $"cluster_size={clusterSize}", path, old.ToString());
        ChainImages.Scatter(path, "qcow2", seed: 9, writes: 20, old, zeroes: true);
        var before = Guest(path, "qcow2");
        long l1Before = Header(path).L1TableOffset;

        ResizeImage.Run(path, new ResizeOptions { Size = size });

        var header = Header(path);
        Assert.Equal(moves, header.L1TableOffset != l1Before);
        Assert.Equal(Qcow2Header.RequiredL1Size(size, header.ClusterBits), header.L1Size);
        Qemu.CheckClean(path);
        Assert.Equal(size, Qemu.Info(path).GetProperty("virtual-size").GetInt64());
        Assert.Equal(Sha(before), Sha(Guest(path, "qcow2", old)));
    }

    [SkippableFact]
    public void GrowingAnOverlayOverALargerBackingFileReadsZeroesNotTheBackingData()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string baseImage = dir.File("base.qcow2"), top = dir.File("top.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", baseImage, (32 << 20).ToString());
        Qemu.Io("-c", $"write -P 0x5a 0 {32 << 20}", baseImage);
        Qemu.Img("create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top, (8 << 20).ToString());
        Qemu.Io("-c", "write -P 0x11 1M 1M", top);
        var before = Guest(top, "qcow2");

        ResizeImage.Run(top, new ResizeOptions { Size = 32 << 20 });

        AssertResized(top, "qcow2", before, 32 << 20);
    }

    [SkippableFact]
    public void AVersion3ImageWithSnapshotsShrinksAndItsSnapshotStillRestores()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("snap.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", path, Old.ToString());
        ChainImages.Scatter(path, "qcow2", seed: 10, writes: 20, Old, zeroes: false);
        var full = Guest(path, "qcow2");
        Qemu.Img("snapshot", "-c", "s1", path);

        ResizeImage.Run(path, new ResizeOptions { Size = 6 << 20, Shrink = true });

        AssertResized(path, "qcow2", full, 6 << 20);
        Qemu.Img("snapshot", "-a", "s1", path);
        Qemu.CheckClean(path);
        Assert.Equal(Sha(full), Sha(Guest(path, "qcow2")));
    }

    // qemu-img 7.2 leaves the bytes past an unaligned end in the last cluster, so a shrink and a grow bring them back;
    // VDisk zeroes them: in place, or (a cluster shared with a snapshot) through a copy-on-write after the grow.
    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void GrowingPastAnUnalignedEndReadsZeroesWhereQemuImgBringsOldBytesBack(bool snapshot)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("tail.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", path, "1M");
        Qemu.Io("-c", "write -P 0x55 0 1M", path);
        ResizeImage.Run(path, new ResizeOptions { Size = (1 << 20) - 3072, Shrink = true });
        if (snapshot) Qemu.Img("snapshot", "-c", "s1", path);
        var before = Guest(path, "qcow2");

        ResizeImage.Run(path, new ResizeOptions { Size = 2 << 20 });

        AssertResized(path, "qcow2", before, 2 << 20); // also: [old end, 2 MiB) reads as zeroes
        if (snapshot) Assert.Equal(Sha(before), Sha(SnapshotGuest(path, "s1").AsSpan(0, before.Length))); // qemu-img reads it at the current size
    }

    private static byte[] SnapshotGuest(string path, string snapshot)
    {
        string raw = path + ".snap.raw";
        Qemu.Img("convert", "-U", "-l", snapshot, "-O", "raw", path, raw);
        var bytes = File.ReadAllBytes(raw);
        File.Delete(raw);
        return bytes;
    }

    [SkippableFact]
    public void RefusalsMatchQemuImg()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string v2 = dir.File("v2.qcow2"), q = dir.File("q.qcow2"), vmdk = dir.File("d.vmdk"), vdi = dir.File("small.vdi");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "compat=0.10", v2, "8M");
        Qemu.Img("snapshot", "-c", "s1", v2);
        Qemu.Img("create", "-q", "-f", "qcow2", q, "8M");
        Qemu.Img("create", "-q", "-f", "vmdk", vmdk, "8M");
        Qemu.Img("create", "-q", "-f", "vdi", "-o", "static=on", vdi, "128M"); // a full map sector, every block allocated

        Assert.Equal(VDiskErrorKind.Unsupported, Refused(v2, new ResizeOptions { Size = 16 << 20 }));
        Assert.NotEqual(0, Qemu.TryImg("resize", v2, "16M").ExitCode);
        Assert.Equal(VDiskErrorKind.InvalidArgument, Refused(q, new ResizeOptions { Size = 4 << 20 }));
        Assert.Equal(VDiskErrorKind.InvalidArgument, Refused(q, new ResizeOptions { Size = 4 << 20, Shrink = true, Preallocation = Preallocation.Full }));
        Assert.Equal(VDiskErrorKind.InvalidArgument, Refused(q, new ResizeOptions { Size = (16 << 20) + 1 }));
        var e = Assert.Throws<VDiskException>(() => ResizeImage.Run(vmdk, new ResizeOptions { Size = 16 << 20 }));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        Assert.Contains("monolithicSparse", e.Message);
        Assert.Equal(8L << 20, Qemu.Info(q).GetProperty("virtual-size").GetInt64());
        var full = Assert.Throws<VDiskException>(() => ResizeImage.Run(vdi, new ResizeOptions { Size = 1L << 30 }));
        Assert.Equal(VDiskErrorKind.Unsupported, full.Kind);
        Assert.Contains("all 128 blocks allocated", full.Message);
        Assert.Equal(128L << 20, Qemu.Info(vdi).GetProperty("virtual-size").GetInt64());
        Qemu.CheckClean(vdi);
    }

    private static VDiskErrorKind Refused(string path, ResizeOptions options)
        => Assert.Throws<VDiskException>(() => ResizeImage.Run(path, options)).Kind;

    private static void AssertResized(string path, string format, byte[] before, long size)
    {
        if (format != "raw") Qemu.CheckClean(path);
        Assert.Equal(format == "raw" ? (size + 511) / 512 * 512 : size, Qemu.Info(path).GetProperty("virtual-size").GetInt64()); // qemu sees a raw file in whole sectors
        var after = Guest(path, format);
        int kept = (int)Math.Min(before.Length, size);
        Assert.Equal(Sha(before.AsSpan(0, kept)), Sha(after.AsSpan(0, kept)));
        Assert.True(after.AsSpan(kept).IndexOfAnyExcept((byte)0) < 0, "the new area must read as zeroes");
    }

    private static Qcow2Header Header(string path)
    {
        var bytes = new byte[65536];
        using (var f = File.OpenRead(path)) f.ReadExactly(bytes, 0, (int)Math.Min(bytes.Length, f.Length));
        return Qcow2Header.Parse(bytes, path);
    }

    // What qemu-img reads as the guest content (the first `length` bytes when given).
    private static byte[] Guest(string path, string format, long? length = null)
    {
        string raw = path + ".guest.raw";
        Qemu.Img("convert", "-U", "-f", format, "-O", "raw", path, raw);
        try
        {
            using var stream = File.OpenRead(raw);
            var bytes = new byte[length ?? stream.Length];
            stream.ReadExactly(bytes);
            return bytes;
        }
        finally
        {
            File.Delete(raw);
        }
    }

    private static string Sha(ReadOnlySpan<byte> bytes) => Convert.ToHexString(SHA256.HashData(bytes));
}
