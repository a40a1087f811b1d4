// Partition-table seeds, built in memory: GPT disks at 512- and 4096-byte sectors (protective MBR, both headers and
// entry arrays, CRCs right), a DOS table with an extended partition and two logical partitions, a whole-disk ext4
// superblock and a FAT boot sector inside an MBR partition. Small disks, so afl-fuzz mutates kilobytes.
using System.Buffers.Binary;
using System.Text;
using VDisk.Engine.Partitions;

namespace VDisk.Fuzz.Seeds;

internal static class PartitionSeeds
{
    public static IEnumerable<Seed> Make()
    {
        yield return new Seed("gpt-512.img", Gpt(512, 128));
        yield return new Seed("gpt-4096.img", Gpt(4096, 32));
        yield return new Seed("dos-logical.img", Dos());
        var ext = new byte[4096];
        BinaryPrimitives.WriteUInt16LittleEndian(ext.AsSpan(1024 + 0x38), 0xEF53);
        BinaryPrimitives.WriteUInt32LittleEndian(ext.AsSpan(1024 + 0x60), 0x2 | 0x40);
        yield return new Seed("whole-ext4.img", ext);
        yield return new Seed("dos-fat.img", DosFat());
    }

    private static void Record(byte[] disk, long lba, int slot, byte type, uint start, uint count, byte status = 0)
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

    private static byte[] Gpt(int ss, int sectors)
    {
        var disk = new byte[ss * sectors];
        Record(disk, 0, 0, 0xEE, 1, (uint)sectors - 1);
        const int count = 4, size = 128;
        var array = new byte[count * size];
        var parts = new (Guid Type, ulong First, ulong Last, string Name)[]
        {
            (PartitionTypes.EfiSystem, 4, (ulong)sectors / 2, "EFI"),
            (PartitionTypes.LinuxFilesystem, (ulong)sectors / 2 + 1, (ulong)sectors - 4, "root"),
        };
        for (int i = 0; i < parts.Length; i++)
        {
            var e = array.AsSpan(i * size);
            parts[i].Type.TryWriteBytes(e);
            Guid.NewGuid().TryWriteBytes(e[16..]);
            BinaryPrimitives.WriteUInt64LittleEndian(e[32..], parts[i].First);
            BinaryPrimitives.WriteUInt64LittleEndian(e[40..], parts[i].Last);
            Encoding.Unicode.GetBytes(parts[i].Name).CopyTo(e[56..]);
        }
        ulong backupArray = (ulong)sectors - 2; // 512 bytes of entries fit one block at either sector size
        array.CopyTo(disk.AsSpan(2 * ss));
        array.CopyTo(disk.AsSpan((int)backupArray * ss));
        Header(disk, ss, 1, (ulong)sectors - 1, 2, 3, backupArray - 1, array);
        Header(disk, ss, (ulong)sectors - 1, 1, backupArray, 3, backupArray - 1, array);
        return disk;
    }

    private static void Header(byte[] disk, int ss, ulong my, ulong alternate, ulong entries, ulong first, ulong last, byte[] array)
    {
        var h = disk.AsSpan((int)my * ss, 92);
        "EFI PART"u8.CopyTo(h);
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], 0x00010000);
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], 92);
        BinaryPrimitives.WriteUInt64LittleEndian(h[24..], my);
        BinaryPrimitives.WriteUInt64LittleEndian(h[32..], alternate);
        BinaryPrimitives.WriteUInt64LittleEndian(h[40..], first);
        BinaryPrimitives.WriteUInt64LittleEndian(h[48..], last);
        Guid.NewGuid().TryWriteBytes(h[56..]);
        BinaryPrimitives.WriteUInt64LittleEndian(h[72..], entries);
        BinaryPrimitives.WriteUInt32LittleEndian(h[80..], 4);
        BinaryPrimitives.WriteUInt32LittleEndian(h[84..], 128);
        BinaryPrimitives.WriteUInt32LittleEndian(h[88..], System.IO.Hashing.Crc32.HashToUInt32(array));
        BinaryPrimitives.WriteUInt32LittleEndian(h[16..], System.IO.Hashing.Crc32.HashToUInt32(h));
    }

    private static byte[] Dos()
    {
        var disk = new byte[64 * 1024];
        Record(disk, 0, 0, 0x83, 8, 24, status: 0x80);
        Record(disk, 0, 1, 0x05, 32, 96);
        Record(disk, 32, 0, 0x82, 1, 31);
        Record(disk, 32, 1, 0x05, 32, 64);
        Record(disk, 64, 0, 0x8E, 1, 63);
        return disk;
    }

    private static byte[] DosFat()
    {
        var disk = new byte[32 * 1024];
        Record(disk, 0, 0, 0x0C, 8, 56);
        var b = disk.AsSpan(8 * 512);
        b[0] = 0xEB; b[1] = 0x3C; b[2] = 0x90;
        BinaryPrimitives.WriteUInt16LittleEndian(b[0x0B..], 512);
        b[0x0D] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(b[0x0E..], 1);
        b[0x10] = 2;
        BinaryPrimitives.WriteUInt16LittleEndian(b[0x11..], 16);
        BinaryPrimitives.WriteUInt16LittleEndian(b[0x13..], 56);
        BinaryPrimitives.WriteUInt16LittleEndian(b[0x16..], 1);
        b[0x1FE] = 0x55; b[0x1FF] = 0xAA;
        return disk;
    }
}
