// Persistent bitmaps in memory, without QEMU (qcow2.rst "Bitmap directory", "Bitmap table", "Bitmaps"): the bit order
// and the all-ones and all-zeroes table entries, clipping to the virtual size, and hostile directories and tables, which
// must give a clear error or "not usable", never a crash or a huge allocation, and must never be trusted.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Qcow2;

public class Qcow2BitmapTests
{
    private const int ClusterSize = 4096;
    private const long Size = (20L << 20) + 1024; // not a whole number of 4 KiB granules

    // An image with one empty 512-byte-granule bitmap: each 4 KiB data cluster covers 32768 granules (16 MiB).
    private static (byte[] Bytes, long Table) WithBitmap(string name = "b")
    {
        var memory = new MemoryStorage("m.qcow2");
        Qcow2Creator.WriteEmpty(memory, new CreateOptions { ClusterSize = ClusterSize, Size = Size }, Size, null, null);
        using (var image = Qcow2Image.Open(memory, writable: true, Qcow2CacheBudget.Default))
        {
            image.AddBitmap(name, 512);
            Assert.Empty(image.DirtyRanges(name));
        }
        var bytes = memory.ToArray();
        using var driver = Open(bytes);
        return (bytes, Entry(driver).TableOffset);
    }

    private static Qcow2Driver Open(byte[] bytes) => Qcow2Driver.Open(new MemoryStorage("m.qcow2", bytes, canWrite: false), writable: false);

    private static Qcow2BitmapEntry Entry(Qcow2Driver driver) => Qcow2BitmapDirectory.Read(driver.Storage, driver.Header).Entries.Single();

    // Appends a cluster at the next cluster boundary; returns its offset.
    private static long Append(ref byte[] bytes, byte[] cluster)
    {
        long at = (bytes.Length + ClusterSize - 1) / ClusterSize * ClusterSize;
        Array.Resize(ref bytes, (int)at + cluster.Length);
        cluster.CopyTo(bytes, at);
        return at;
    }

    [Fact]
    public void BitsAreReadLeastSignificantFirstAndTableEntriesMayBeAllOnes()
    {
        var (bytes, table) = WithBitmap();
        var data = new byte[ClusterSize];
        data[0] = 0b1000_0001;   // granules 0 and 7
        data[1] = 0xff;          // 8..15, joined with nothing before (7 is set, 8 too: 7..15 is one run)
        data[4095] = 0x80;       // granule 32767, the last of the first data cluster: joins the all-ones second entry
        long host = Append(ref bytes, data);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((int)table), (ulong)host);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((int)table + 8), Qcow2BitmapDirectory.AllOnes);
        using var driver = Open(bytes);
        Assert.Equal(new[]
        {
            new DirtyRange(0, 512),
            new DirtyRange(7 * 512, 9 * 512),
            new DirtyRange(32767L * 512, driver.VirtualSize - 32767L * 512), // to the end of the disk (whole sectors, as QEMU keeps)
        }, driver.ReadBitmap("b"));
        Assert.True(driver.Bitmaps.Single().Consistent);
    }

    public static TheoryData<string, int, ulong, string> HostileEntries => new()
    {
        // field offset in the directory entry, the value written (width by offset), what the problem says
        { "in use", 12, 3, "in use" },
        { "unknown flag", 12, 0x12, "unknown flags" },
        { "type 2", 16, 2, "type 2" },
        { "granularity 8", 17, 8, "granularity_bits" },
        { "granularity 64", 17, 64, "granularity_bits" },
        { "table too small", 8, 1, "needs 2" },
        { "table huge", 8, uint.MaxValue, "needs 2" },
        { "table misaligned", 0, 12345, "misaligned" },
        { "table past the end", 0, 1UL << 50, "beyond the end" },
    };

    [Theory]
    [MemberData(nameof(HostileEntries))]
    public void AHostileDirectoryEntryIsListedAsNotUsableAndNeverRead(string what, int field, ulong value, string problem)
    {
        var (bytes, _) = WithBitmap();
        using (var driver = Open(bytes)) Patch(bytes, driver, field, value);
        using var hostile = Open(bytes);
        var listed = Assert.Single(hostile.Bitmaps);
        Assert.False(listed.Consistent, what);
        Assert.Contains(problem, listed.Problem);
        var e = Assert.Throws<VDiskException>(() => hostile.ReadBitmap("b").ToList());
        Assert.Contains(problem, e.Message);
    }

    [Theory]
    [InlineData(0x0100_0000_0000_0000UL, "reserved bits")]
    [InlineData(0x2UL, "reserved bits")]
    [InlineData(0x201UL, "reserved bits")]       // an offset with the all-ones bit
    [InlineData(0x1200UL, "misaligned")]
    [InlineData(0x00ff_ffff_ffff_fe00UL, "beyond the end")]
    public void AHostileTableEntryMakesTheBitmapNotUsable(ulong entry, string problem)
    {
        var (bytes, table) = WithBitmap();
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((int)table + 8), entry);
        using var driver = Open(bytes);
        Assert.Contains(problem, Assert.Single(driver.Bitmaps).Problem);
        Assert.Throws<VDiskException>(() => driver.ReadBitmap("b").ToList());
    }

    [Theory]
    [InlineData(0, 0UL, "counts 0 bitmaps")]
    [InlineData(0, 70000UL, "counts 70000")]
    [InlineData(0, 2UL, "holds 1 entries, not the 2")]
    [InlineData(8, 0UL, "directory size is 0")]
    [InlineData(8, 1UL << 40, "directory size")]
    [InlineData(8, 16UL, "runs past its end")]
    [InlineData(8, 4096UL, "beyond the end")]
    [InlineData(16, 100UL, "misaligned")]
    [InlineData(16, 1UL << 62, "beyond the end")]
    [InlineData(4, 1UL, "reserved field")]
    public void AHostileExtensionIsACorruptionErrorForListingAndShowsNoBitmapsInGetVDisk(int field, ulong value, string problem)
    {
        var (bytes, _) = WithBitmap();
        var header = Qcow2Header.Parse(bytes, "m.qcow2");
        int at = ExtensionDataOffset(bytes);
        if (field == 0 || field == 4) BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(at + field), (uint)value);
        else BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(at + field), value);
        using var driver = Open(bytes);
        var e = Assert.Throws<VDiskException>(() => driver.Bitmaps);
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains(problem, e.Message);
        Assert.Empty(driver.Details.Bitmaps);
        _ = header;
    }

    [Fact]
    public void AGuestWriteToAnImageWithAnUnreadableDirectoryDropsTheAutoclearBitInsteadOfTrustingIt()
    {
        var (bytes, _) = WithBitmap();
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(ExtensionDataOffset(bytes)), 2); // count says 2, directory has 1
        var memory = new MemoryStorage("m.qcow2", bytes);
        using (var disk = new VirtualDisk("m.qcow2", Qcow2Driver.Open(memory, writable: true), null, writable: true))
            disk.Write(0, new byte[] { 1 });
        var header = Qcow2Header.Parse(memory.ToArray(), "m.qcow2");
        Assert.Equal(0UL, header.AutoclearFeatures & Qcow2Features.Bitmaps);
        using var driver = Open(memory.ToArray());
        Assert.Empty(driver.Bitmaps);
    }

    [Fact]
    public void AWriteMarksEveryBitmapInUseOnceAndAReadOnlyOpenWritesNothing()
    {
        var (bytes, _) = WithBitmap();
        var memory = new MemoryStorage("m.qcow2", bytes);
        using (var image = Qcow2Image.Open(memory, writable: true, Qcow2CacheBudget.Default)) image.AddBitmap("second", 65536);
        var before = memory.ToArray();
        using (var disk = new VirtualDisk("m.qcow2", Qcow2Driver.Open(new MemoryStorage("m.qcow2", before, canWrite: false), writable: false), null, writable: false))
            Images.ReadAll(disk);
        using (var disk = new VirtualDisk("m.qcow2", Qcow2Driver.Open(memory, writable: true), null, writable: true))
        {
            Assert.Equal(before, memory.ToArray()); // a writable open alone changes nothing
            disk.Write(4096, new byte[512]);
            disk.Write(1 << 20, new byte[512]);
        }
        using var driver = Open(memory.ToArray());
        Assert.All(driver.Bitmaps, b => Assert.True(b.InUse && !b.Consistent && b.Enabled));
        Assert.True(Qcow2Check.Run(new MemoryStorage("m.qcow2", memory.ToArray(), canWrite: false)).IsClean);
    }

    // Offset of the bitmaps extension's data in the first cluster.
    private static int ExtensionDataOffset(byte[] bytes)
    {
        int pos = (int)BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(Qcow2Header.HeaderLengthOffset));
        while (BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(pos)) != Qcow2HeaderExtension.BitmapsType)
            pos += 8 + (int)((BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(pos + 4)) + 7) & ~7u);
        return pos + 8;
    }

    // Writes `value` into the directory entry field at `field` (8 bytes at 0, 4 at 8 and 12, 1 at 16 and 17).
    private static void Patch(byte[] bytes, Qcow2Driver driver, int field, ulong value)
    {
        long directory = (long)BinaryPrimitives.ReadUInt64BigEndian(bytes.AsSpan(ExtensionDataOffset(bytes) + 16));
        var at = bytes.AsSpan((int)directory + field);
        switch (field)
        {
            case 0: BinaryPrimitives.WriteUInt64BigEndian(at, value); break;
            case 8 or 12: BinaryPrimitives.WriteUInt32BigEndian(at, (uint)value); break;
            default: at[0] = (byte)value; break;
        }
        _ = driver;
    }
}
