// In-memory disks with hand-built partition tables for the partition reader's tests: a GPT (protective MBR, primary
// header at LBA 1, entry array at LBA 2, backup array and header at the end, both CRC-32s right) at 512- or
// 4096-byte sectors, DOS tables with EBR chains, and the file system magics the probe looks for.
using System.Buffers.Binary;
using System.Text;
using VDisk.Engine.Partitions;

namespace VDisk.Engine.Tests.Partitions;

internal sealed record GptPart(Guid Type, Guid Unique, ulong First, ulong Last, string Name, ulong Attributes = 0);

internal static class TestDisks
{
    public static PartitionTable Read(byte[] disk, string path = "mem.img") =>
        PartitionReader.Read(path, disk.Length, (offset, dest) => disk.AsSpan((int)offset, dest.Length).CopyTo(dest));

    /// <summary>A GPT disk of <paramref name="sectors"/> blocks; entries at LBA 2 (primary) and before the backup header.</summary>
    public static byte[] Gpt(int sectorSize, long sectors, IEnumerable<GptPart> parts, uint entryCount = 128, uint entrySize = 128)
    {
        var disk = new byte[sectorSize * sectors];
        // Protective MBR: one 0xEE record over the whole disk.
        disk[0x1BE + 4] = 0xEE;
        BinaryPrimitives.WriteUInt32LittleEndian(disk.AsSpan(0x1BE + 8), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(disk.AsSpan(0x1BE + 12), (uint)Math.Min(sectors - 1, uint.MaxValue));
        disk[0x1FE] = 0x55;
        disk[0x1FF] = 0xAA;
        var array = new byte[entryCount * entrySize];
        int i = 0;
        foreach (var p in parts)
        {
            var e = array.AsSpan(i++ * (int)entrySize);
            p.Type.TryWriteBytes(e);
            p.Unique.TryWriteBytes(e[16..]);
            BinaryPrimitives.WriteUInt64LittleEndian(e[32..], p.First);
            BinaryPrimitives.WriteUInt64LittleEndian(e[40..], p.Last);
            BinaryPrimitives.WriteUInt64LittleEndian(e[48..], p.Attributes);
            Encoding.Unicode.GetBytes(p.Name).CopyTo(e[56..]);
        }
        long arraySectors = (array.Length + sectorSize - 1) / sectorSize;
        long backupArrayLba = sectors - 1 - arraySectors;
        array.CopyTo(disk.AsSpan((int)(2 * sectorSize)));
        array.CopyTo(disk.AsSpan((int)(backupArrayLba * sectorSize)));
        var diskGuid = new Guid("11111111-2222-3333-4444-555555555555");
        WriteHeader(disk, sectorSize, 1, (ulong)sectors - 1, 2, (ulong)(2 + arraySectors), (ulong)(backupArrayLba - 1), diskGuid, entryCount, entrySize, array);
        WriteHeader(disk, sectorSize, (ulong)sectors - 1, 1, (ulong)backupArrayLba, (ulong)(2 + arraySectors), (ulong)(backupArrayLba - 1), diskGuid, entryCount, entrySize, array);
        return disk;
    }

    public static void WriteHeader(byte[] disk, int sectorSize, ulong myLba, ulong alternate, ulong entryLba, ulong firstUsable, ulong lastUsable,
        Guid diskGuid, uint entryCount, uint entrySize, byte[] array)
    {
        var h = disk.AsSpan((int)(myLba * (ulong)sectorSize), sectorSize);
        h.Clear();
        "EFI PART"u8.CopyTo(h);
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], 0x00010000);
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], 92);
        BinaryPrimitives.WriteUInt64LittleEndian(h[24..], myLba);
        BinaryPrimitives.WriteUInt64LittleEndian(h[32..], alternate);
        BinaryPrimitives.WriteUInt64LittleEndian(h[40..], firstUsable);
        BinaryPrimitives.WriteUInt64LittleEndian(h[48..], lastUsable);
        diskGuid.TryWriteBytes(h[56..]);
        BinaryPrimitives.WriteUInt64LittleEndian(h[72..], entryLba);
        BinaryPrimitives.WriteUInt32LittleEndian(h[80..], entryCount);
        BinaryPrimitives.WriteUInt32LittleEndian(h[84..], entrySize);
        BinaryPrimitives.WriteUInt32LittleEndian(h[88..], System.IO.Hashing.Crc32.HashToUInt32(array.AsSpan(0, (int)Math.Min((long)entryCount * entrySize, array.Length))));
        FixHeaderCrc(disk, sectorSize, myLba);
    }

    /// <summary>Recomputes the header CRC of the header at <paramref name="lba"/> after a field was changed.</summary>
    public static void FixHeaderCrc(byte[] disk, int sectorSize, ulong lba)
    {
        var h = disk.AsSpan((int)(lba * (ulong)sectorSize), 92);
        BinaryPrimitives.WriteUInt32LittleEndian(h[16..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(h[16..], System.IO.Hashing.Crc32.HashToUInt32(h));
    }

    /// <summary>Writes one 16-byte MBR/EBR record at slot <paramref name="slot"/> of the sector at <paramref name="lba"/> and its signature.</summary>
    public static void MbrRecord(byte[] disk, long lba, int slot, byte type, uint start, uint count, byte status = 0)
    {
        var s = disk.AsSpan((int)(lba * 512));
        var e = s.Slice(0x1BE + slot * 16, 16);
        e[0] = status;
        e[4] = type;
        BinaryPrimitives.WriteUInt32LittleEndian(e[8..], start);
        BinaryPrimitives.WriteUInt32LittleEndian(e[12..], count);
        s[0x1FE] = 0x55;
        s[0x1FF] = 0xAA;
    }

    /// <summary>An ext4-looking superblock at <paramref name="offset"/> (magic and features only).</summary>
    public static void Ext4(byte[] disk, long offset)
    {
        var sb = disk.AsSpan((int)offset + 1024);
        BinaryPrimitives.WriteUInt16LittleEndian(sb[0x38..], 0xEF53);
        BinaryPrimitives.WriteUInt32LittleEndian(sb[0x5C..], 0x4);          // has_journal
        BinaryPrimitives.WriteUInt32LittleEndian(sb[0x60..], 0x2 | 0x40);   // filetype, extent
        BinaryPrimitives.WriteUInt32LittleEndian(sb[0x64..], 0x1);          // sparse_super
    }
}
