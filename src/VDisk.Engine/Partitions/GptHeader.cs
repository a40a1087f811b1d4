// The GUID Partition Table header (UEFI 2.10 §5.3.2 "GPT Header", Table 5-5): signature "EFI PART", header size
// and CRC-32, MyLBA / AlternateLBA (the primary lives at LBA 1, the backup at the last LBA of the disk), the
// usable LBA range, the disk GUID and the partition entry array (its LBA, entry count, entry size and CRC-32).
// §5.3.2 "Validity rules": both CRCs must match, MyLBA must be the LBA the header was read from, and the entry
// size is 128 × 2^n. Every field is checked against the disk and against hard limits before the array is read.
using System.Buffers.Binary;

namespace VDisk.Engine.Partitions;

/// <summary>A parsed and validated GPT header.</summary>
internal sealed class GptHeader
{
    /// <summary>"EFI PART" read as a little-endian 64-bit value.</summary>
    public const ulong Signature = 0x5452415020494645;
    /// <summary>The smallest HeaderSize (the fields of Table 5-5, 92 bytes).</summary>
    public const int MinHeaderSize = 92;
    /// <summary>The smallest SizeOfPartitionEntry (Table 5-6, 128 bytes).</summary>
    public const int MinEntrySize = 128;
    /// <summary>Largest entry array read (32768 entries of 128 bytes): far beyond any partitioning tool, bounded in memory.</summary>
    public const int MaxEntryArrayBytes = 4 << 20;
    /// <summary>Largest SizeOfPartitionEntry accepted; the spec's 128 × 2^n with no tool writing more than 128.</summary>
    public const int MaxEntrySize = 4096;

    internal const int SignatureOffset = 0, RevisionOffset = 8, HeaderSizeOffset = 12, HeaderCrcOffset = 16,
        MyLbaOffset = 24, AlternateLbaOffset = 32, FirstUsableLbaOffset = 40, LastUsableLbaOffset = 48,
        DiskGuidOffset = 56, EntryLbaOffset = 72, EntryCountOffset = 80, EntrySizeOffset = 84, EntryArrayCrcOffset = 88;

    public uint Revision { get; private init; }
    public uint HeaderSize { get; private init; }
    public ulong MyLba { get; private init; }
    public ulong AlternateLba { get; private init; }
    public ulong FirstUsableLba { get; private init; }
    public ulong LastUsableLba { get; private init; }
    public Guid DiskGuid { get; private init; }
    public ulong EntryLba { get; private init; }
    public uint EntryCount { get; private init; }
    public uint EntrySize { get; private init; }
    public uint EntryArrayCrc { get; private init; }

    /// <summary>Bytes of the entry array (count × size), valid after <see cref="TryParse"/> succeeded.</summary>
    public int EntryArrayBytes => (int)(EntryCount * EntrySize);

    /// <summary>True when <paramref name="sector"/> starts with "EFI PART".</summary>
    public static bool HasSignature(ReadOnlySpan<byte> sector) =>
        sector.Length >= 8 && BinaryPrimitives.ReadUInt64LittleEndian(sector) == Signature;

    /// <summary>
    /// Parses and validates the header in <paramref name="sector"/> (one logical block of <paramref name="sectorSize"/>
    /// bytes) read from <paramref name="lba"/> of a disk of <paramref name="diskSectors"/> blocks. Returns null with the
    /// reason when any rule is broken.
    /// </summary>
    public static GptHeader? TryParse(ReadOnlySpan<byte> sector, int sectorSize, ulong lba, ulong diskSectors, out string? reason)
    {
        reason = null;
        if (sector.Length < sectorSize || !HasSignature(sector))
        {
            reason = "no \"EFI PART\" signature";
            return null;
        }
        uint headerSize = BinaryPrimitives.ReadUInt32LittleEndian(sector[HeaderSizeOffset..]);
        if (headerSize < MinHeaderSize || headerSize > sectorSize)
        {
            reason = $"header size {headerSize} is outside {MinHeaderSize}..{sectorSize}";
            return null;
        }
        uint storedCrc = BinaryPrimitives.ReadUInt32LittleEndian(sector[HeaderCrcOffset..]);
        var crc32 = new System.IO.Hashing.Crc32(); // the IEEE CRC-32 the specification names, with the CRC field read as zero
        crc32.Append(sector[..HeaderCrcOffset]);
        crc32.Append(stackalloc byte[4]);
        crc32.Append(sector[(HeaderCrcOffset + 4)..(int)headerSize]);
        uint crc = crc32.GetCurrentHashAsUInt32();
        if (crc != storedCrc)
        {
            reason = $"header CRC-32 mismatch (stored 0x{storedCrc:x8}, computed 0x{crc:x8})";
            return null;
        }
        var h = new GptHeader
        {
            Revision = BinaryPrimitives.ReadUInt32LittleEndian(sector[RevisionOffset..]),
            HeaderSize = headerSize,
            MyLba = BinaryPrimitives.ReadUInt64LittleEndian(sector[MyLbaOffset..]),
            AlternateLba = BinaryPrimitives.ReadUInt64LittleEndian(sector[AlternateLbaOffset..]),
            FirstUsableLba = BinaryPrimitives.ReadUInt64LittleEndian(sector[FirstUsableLbaOffset..]),
            LastUsableLba = BinaryPrimitives.ReadUInt64LittleEndian(sector[LastUsableLbaOffset..]),
            DiskGuid = new Guid(sector.Slice(DiskGuidOffset, 16)),
            EntryLba = BinaryPrimitives.ReadUInt64LittleEndian(sector[EntryLbaOffset..]),
            EntryCount = BinaryPrimitives.ReadUInt32LittleEndian(sector[EntryCountOffset..]),
            EntrySize = BinaryPrimitives.ReadUInt32LittleEndian(sector[EntrySizeOffset..]),
            EntryArrayCrc = BinaryPrimitives.ReadUInt32LittleEndian(sector[EntryArrayCrcOffset..]),
        };
        reason = h.Validate(sectorSize, lba, diskSectors);
        return reason is null ? h : null;
    }

    private string? Validate(int sectorSize, ulong lba, ulong diskSectors)
    {
        if (MyLba != lba) return $"MyLBA is {MyLba} but the header was read from LBA {lba}";
        if (EntrySize < MinEntrySize || EntrySize > MaxEntrySize || !IsPowerOfTwoMultiple(EntrySize))
            return $"partition entry size {EntrySize} is not 128 × 2^n bytes up to {MaxEntrySize}";
        if (EntryCount == 0) return "the partition entry array has no entries";
        if ((ulong)EntryCount * EntrySize > MaxEntryArrayBytes)
            return $"the partition entry array ({EntryCount} entries of {EntrySize} bytes) is larger than the {MaxEntryArrayBytes >> 20} MiB limit";
        ulong arraySectors = ((ulong)EntryCount * EntrySize + (ulong)sectorSize - 1) / (ulong)sectorSize;
        if (EntryLba < 2 || EntryLba >= diskSectors || arraySectors > diskSectors - EntryLba)
            return $"the partition entry array (LBA {EntryLba}, {arraySectors} blocks) is not inside the disk of {diskSectors} blocks";
        if (LastUsableLba >= diskSectors) return $"LastUsableLBA {LastUsableLba} is beyond the disk's last LBA {diskSectors - 1}";
        if (FirstUsableLba > LastUsableLba + 1) return $"FirstUsableLBA {FirstUsableLba} is after LastUsableLBA {LastUsableLba}";
        return null;
    }

    private static bool IsPowerOfTwoMultiple(uint size) => size % MinEntrySize == 0 && uint.IsPow2(size / MinEntrySize);
}
