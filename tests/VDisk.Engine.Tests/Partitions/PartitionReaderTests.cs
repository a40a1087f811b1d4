// The partition reader on hand-built tables: GPT at 512 and 4096-byte sectors, the backup header when the primary or
// its entry array is damaged, both damaged, hostile headers (huge entry arrays, odd entry sizes, LBAs beyond the disk),
// DOS tables with logical partitions, EBR loops and over-long chains, whole-disk file systems, and random damage.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Partitions;

namespace VDisk.Engine.Tests.Partitions;

public class PartitionReaderTests
{
    private static readonly Guid Root = new("11112222-3333-4444-5555-666677778888");
    private static readonly Guid Esp = new("aaaabbbb-cccc-dddd-eeee-ffff00001111");

    private static GptPart[] TwoParts(int ss) => new[]
    {
        new GptPart(PartitionTypes.EfiSystem, Esp, 2048 * 512 / (ulong)ss, 4095 * 512 / (ulong)ss, "EFI system partition", 1UL << 2),
        new GptPart(PartitionTypes.LinuxFilesystem, Root, 4096 * 512 / (ulong)ss, 8191 * 512 / (ulong)ss, "root"),
    };

    [Theory]
    [InlineData(512)]
    [InlineData(4096)]
    public void ReadsGptAtBothSectorSizes(int ss)
    {
        long sectors = 16L * 1024 * 1024 / ss;
        var disk = TestDisks.Gpt(ss, sectors, TwoParts(ss));
        TestDisks.Ext4(disk, 4096 * 512);
        var t = TestDisks.Read(disk);
        Assert.Equal(PartitionTableType.Gpt, t.Type);
        Assert.Equal(ss, t.SectorSize);
        Assert.Equal(GptHeaderUsed.Primary, t.Header);
        Assert.Empty(t.Problems);
        Assert.Equal("11111111-2222-3333-4444-555555555555", t.DiskId.ToLowerInvariant());
        Assert.Equal(2, t.Partitions.Count);
        var esp = t.Partitions[0];
        Assert.Equal((1, 2048L * 512, 2048L * 512, "EFI System", "EFI system partition", Esp, true),
            (esp.Number, esp.Start, esp.Size, esp.TypeName, esp.Name, esp.PartitionGuid!.Value, esp.Bootable));
        var root = t.Partitions[1];
        Assert.Equal((2, 4096L * 512, 4096L * 512, "Linux filesystem", "root", "ext4"),
            (root.Number, root.Start, root.Size, root.TypeName, root.Name, root.FileSystem.Name));
        Assert.Contains("has_journal", root.FileSystem.Details);
        Assert.Equal("0FC63DAF-8483-4772-8E79-3D69D8477DE4", root.Type);
    }

    [Theory]
    [InlineData(16)]  // header CRC field
    [InlineData(24)]  // MyLBA (header CRC now wrong as well)
    public void DamagedPrimaryHeaderFallsBackToBackup(int offset)
    {
        var disk = TestDisks.Gpt(512, 32768, TwoParts(512));
        disk[512 + offset] ^= 0x5A;
        var t = TestDisks.Read(disk);
        Assert.Equal(GptHeaderUsed.Backup, t.Header);
        Assert.Equal(2, t.Partitions.Count);
        Assert.Contains(t.Problems, p => p.Contains("primary GPT header") && p.Contains("CRC"));
    }

    [Fact]
    public void DamagedPrimaryEntryArrayFallsBackToBackup()
    {
        var disk = TestDisks.Gpt(512, 32768, TwoParts(512));
        disk[2 * 512 + 60] ^= 1; // a name character of entry 1
        var t = TestDisks.Read(disk);
        Assert.Equal(GptHeaderUsed.Backup, t.Header);
        Assert.Equal("EFI system partition", t.Partitions[0].Name);
        Assert.Contains(t.Problems, p => p.Contains("entry array CRC-32 mismatch"));
    }

    [Fact]
    public void WipedPrimaryHeaderWithProtectiveMbrUsesBackup()
    {
        var disk = TestDisks.Gpt(4096, 4096, TwoParts(4096));
        disk.AsSpan(4096, 4096).Clear();
        var t = TestDisks.Read(disk);
        Assert.Equal((PartitionTableType.Gpt, GptHeaderUsed.Backup, 4096), (t.Type, t.Header, t.SectorSize));
        Assert.Equal(2, t.Partitions.Count);
    }

    [Fact]
    public void DamagedBackupIsAProblemNotAnError()
    {
        var disk = TestDisks.Gpt(512, 32768, TwoParts(512));
        disk[disk.Length - 512 + 30] ^= 1;
        var t = TestDisks.Read(disk);
        Assert.Equal(GptHeaderUsed.Primary, t.Header);
        Assert.Contains(t.Problems, p => p.Contains("backup GPT header"));
    }

    [Fact]
    public void BothHeadersDamagedIsACorruptErrorNamingTheImage()
    {
        var disk = TestDisks.Gpt(512, 32768, TwoParts(512));
        disk[512 + 16] ^= 1;
        disk[disk.Length - 512 + 16] ^= 1;
        var e = Assert.Throws<VDiskException>(() => TestDisks.Read(disk, "/images/broken.qcow2"));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.StartsWith("/images/broken.qcow2: the GPT is damaged", e.Message);
        Assert.Contains("backup header at LBA 32767", e.Message);
    }

    [Fact]
    public void ProtectiveMbrWithNoGptAtAllIsCorrupt()
    {
        var disk = new byte[1 << 20];
        TestDisks.MbrRecord(disk, 0, 0, 0xEE, 1, 2047);
        var e = Assert.Throws<VDiskException>(() => TestDisks.Read(disk));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains("protective MBR", e.Message);
    }

    [Theory]
    [InlineData(0x7FFFFFFFu, 128u, "larger than the 4 MiB limit")]
    [InlineData(40000u, 128u, "larger than the 4 MiB limit")]
    [InlineData(128u, 100u, "not 128 × 2^n")]
    [InlineData(128u, 384u, "not 128 × 2^n")]
    [InlineData(128u, 1u << 20, "not 128 × 2^n")]
    [InlineData(0u, 128u, "no entries")]
    public void HostileEntryArrayGeometryIsRefusedBeforeAllocating(uint count, uint size, string reason)
    {
        var disk = TestDisks.Gpt(512, 32768, TwoParts(512));
        foreach (ulong lba in new ulong[] { 1, 32767 })
        {
            BinaryPrimitives.WriteUInt32LittleEndian(disk.AsSpan((int)lba * 512 + 80), count);
            BinaryPrimitives.WriteUInt32LittleEndian(disk.AsSpan((int)lba * 512 + 84), size);
            TestDisks.FixHeaderCrc(disk, 512, lba);
        }
        long before = GC.GetAllocatedBytesForCurrentThread();
        var e = Assert.Throws<VDiskException>(() => TestDisks.Read(disk));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 8 << 20);
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains(reason, e.Message);
    }

    [Fact]
    public void EntryArrayBeyondTheDiskIsRefused()
    {
        var disk = TestDisks.Gpt(512, 32768, TwoParts(512));
        foreach (ulong lba in new ulong[] { 1, 32767 })
        {
            BinaryPrimitives.WriteUInt64LittleEndian(disk.AsSpan((int)lba * 512 + 72), ulong.MaxValue - 3);
            TestDisks.FixHeaderCrc(disk, 512, lba);
        }
        var e = Assert.Throws<VDiskException>(() => TestDisks.Read(disk));
        Assert.Contains("not inside the disk", e.Message);
    }

    [Fact]
    public void EntriesBeyondTheDiskAreListedWithAProblem()
    {
        var parts = new[]
        {
            new GptPart(PartitionTypes.LinuxFilesystem, Root, 2048, 40000, "too long"),
            new GptPart(PartitionTypes.LinuxFilesystem, Esp, ulong.MaxValue - 10, ulong.MaxValue, "far away"),
            new GptPart(PartitionTypes.LinuxFilesystem, Esp, 3000, 2999, "backwards"),
        };
        var t = TestDisks.Read(TestDisks.Gpt(512, 32768, parts));
        Assert.Equal(3, t.Partitions.Count);
        Assert.All(t.Partitions, p => Assert.NotNull(p.Problem));
        Assert.Contains("beyond the end of the disk", t.Partitions[0].Problem);
        Assert.Equal(long.MaxValue, t.Partitions[1].Start);
        Assert.Equal(0, t.Partitions[2].Size);
        Assert.Equal(3, t.Problems.Count);
    }

    [Fact]
    public void ReadsMbrWithLogicalPartitions()
    {
        var disk = new byte[64 << 20];
        TestDisks.MbrRecord(disk, 0, 0, 0x83, 2048, 20480, status: 0x80);
        TestDisks.MbrRecord(disk, 0, 1, 0x05, 22528, 40960);
        // EBR chain: logical 5 at 24576 (EBR at 22528), logical 6 at 34816 (EBR at 32768).
        TestDisks.MbrRecord(disk, 22528, 0, 0x82, 2048, 8192);
        TestDisks.MbrRecord(disk, 22528, 1, 0x05, 10240, 10240);
        TestDisks.MbrRecord(disk, 32768, 0, 0x8E, 2048, 8192);
        BinaryPrimitives.WriteUInt32LittleEndian(disk.AsSpan(0x1B8), 0xd13fbbb9);
        TestDisks.Ext4(disk, 2048 * 512);
        var t = TestDisks.Read(disk);
        Assert.Equal((PartitionTableType.Mbr, "0xd13fbbb9"), (t.Type, t.DiskId));
        Assert.Equal(new[] { 1, 2, 5, 6 }, t.Partitions.Select(p => p.Number));
        Assert.Equal(new[] { 2048L, 22528, 24576, 34816 }, t.Partitions.Select(p => p.Start / 512));
        Assert.Equal(new[] { "0x83", "0x05", "0x82", "0x8e" }, t.Partitions.Select(p => p.Type));
        Assert.True(t.Partitions[0].Bootable);
        Assert.Equal("ext4", t.Partitions[0].FileSystem.Name);
        Assert.True(t.Partitions[1].IsExtended);
        Assert.True(t.Partitions[3].IsLogical);
        Assert.Empty(t.Problems);
    }

    [Fact]
    public void EbrLoopIsCorrupt()
    {
        var disk = new byte[16 << 20];
        TestDisks.MbrRecord(disk, 0, 0, 0x05, 2048, 20480);
        TestDisks.MbrRecord(disk, 2048, 0, 0x83, 63, 100);
        TestDisks.MbrRecord(disk, 2048, 1, 0x05, 1000, 1000);
        TestDisks.MbrRecord(disk, 3048, 0, 0x83, 63, 100);
        TestDisks.MbrRecord(disk, 3048, 1, 0x05, 0, 1000); // back to the first EBR
        var e = Assert.Throws<VDiskException>(() => TestDisks.Read(disk));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains("loops back to LBA 2048", e.Message);
    }

    [Fact]
    public void OverlongEbrChainIsCorrupt()
    {
        var disk = new byte[16 << 20];
        TestDisks.MbrRecord(disk, 0, 0, 0x05, 2048, 30000);
        for (uint i = 0; i < 300; i++)
        {
            TestDisks.MbrRecord(disk, 2048 + i * 8, 0, 0x83, 1, 7);
            TestDisks.MbrRecord(disk, 2048 + i * 8, 1, 0x05, (i + 1) * 8, 8);
        }
        var e = Assert.Throws<VDiskException>(() => TestDisks.Read(disk));
        Assert.Contains("more than 256 links", e.Message);
    }

    [Fact]
    public void MbrEntriesBeyondTheDiskAreProblems()
    {
        var disk = new byte[1 << 20];
        TestDisks.MbrRecord(disk, 0, 0, 0x83, 2048, uint.MaxValue);
        TestDisks.MbrRecord(disk, 0, 1, 0x0F, uint.MaxValue, 10);
        var t = TestDisks.Read(disk);
        Assert.Equal(2, t.Partitions.Count);
        Assert.Contains(t.Problems, p => p.Contains("EBR at LBA"));
        Assert.Equal(2, t.Partitions.Count(p => p.Problem != null));
    }

    [Fact]
    public void WholeDiskFileSystemIsPartitionZero()
    {
        var disk = new byte[4 << 20];
        TestDisks.Ext4(disk, 0);
        var t = TestDisks.Read(disk);
        var p = Assert.Single(t.Partitions);
        Assert.Equal((0, 0L, disk.LongLength, PartitionTableType.None, "ext4"), (p.Number, p.Start, p.Size, t.Type, p.FileSystem.Name));
    }

    [Fact]
    public void WholeDiskFatIsNotMistakenForAnMbr()
    {
        var disk = new byte[8 << 20];
        disk[0] = 0xEB; disk[1] = 0x3C; disk[2] = 0x90;
        BinaryPrimitives.WriteUInt16LittleEndian(disk.AsSpan(0x0B), 512);
        disk[0x0D] = 1; // 16384 sectors of one-sector clusters: about 16,300 clusters, FAT16
        BinaryPrimitives.WriteUInt16LittleEndian(disk.AsSpan(0x0E), 4);
        disk[0x10] = 2;
        BinaryPrimitives.WriteUInt16LittleEndian(disk.AsSpan(0x11), 512);
        BinaryPrimitives.WriteUInt16LittleEndian(disk.AsSpan(0x13), 16384);
        BinaryPrimitives.WriteUInt16LittleEndian(disk.AsSpan(0x16), 16);
        disk[0x1FE] = 0x55; disk[0x1FF] = 0xAA;
        var t = TestDisks.Read(disk);
        Assert.Equal(PartitionTableType.None, t.Type);
        Assert.Equal("fat16", Assert.Single(t.Partitions).FileSystem.Name);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(100)]
    [InlineData(512)]
    [InlineData(1 << 20)]
    public void EmptyAndTinyDisksHaveNoPartitions(int size)
    {
        var t = TestDisks.Read(new byte[size]);
        Assert.Equal(PartitionTableType.None, t.Type);
        Assert.Empty(t.Partitions);
    }

    [Fact]
    public void RandomDamageNeverCrashes()
    {
        var pristine = TestDisks.Gpt(512, 8192, TwoParts(512).Select(p => p with { Last = Math.Min(p.Last, 8000) }));
        var random = new Random(1234);
        for (int round = 0; round < 3000; round++)
        {
            var disk = (byte[])pristine.Clone();
            int flips = random.Next(1, 8);
            for (int i = 0; i < flips; i++)
            {
                int region = random.Next(4);
                int at = region switch { 0 => random.Next(512), 1 => 512 + random.Next(96), 2 => 1024 + random.Next(512), _ => disk.Length - 512 + random.Next(96) };
                disk[at] = (byte)random.Next(256);
            }
            if (round % 3 == 0) // keep the header CRC right so the fields themselves are exercised
            {
                TestDisks.FixHeaderCrc(disk, 512, 1);
                TestDisks.FixHeaderCrc(disk, 512, 8191);
            }
            try { TestDisks.Read(disk); }
            catch (VDiskException e) { Assert.Equal(VDiskErrorKind.Corrupt, e.Kind); }
        }
    }
}
