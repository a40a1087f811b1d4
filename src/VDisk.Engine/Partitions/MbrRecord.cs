// The Master Boot Record and the Extended Boot Records of a DOS partition table (UEFI 2.10 §5.2.1 "Legacy Master
// Boot Record", Table 5-1 and 5-2: four 16-byte partition records at 0x1BE, signature 0x55 0xAA at 0x1FE; an
// EBR has the same layout, its first record describing one logical partition relative to the EBR and its second
// the next EBR relative to the start of the extended partition). §5.2.3 "Protective MBR": one record of type 0xEE.
using System.Buffers.Binary;

namespace VDisk.Engine.Partitions;

/// <summary>One 16-byte partition record of an MBR or EBR (UEFI Table 5-2).</summary>
/// <param name="Status">BootIndicator: 0x80 bootable ("active"), 0x00 not; any other value is invalid.</param>
/// <param name="Type">OSType, the partition type byte (0 unused, 0x05/0x0F/0x85 extended, 0xEE GPT protective).</param>
/// <param name="StartLba">StartingLBA, in sectors, relative to what the table's kind says.</param>
/// <param name="SectorCount">SizeInLBA.</param>
internal readonly record struct MbrEntry(byte Status, byte Type, uint StartLba, uint SectorCount)
{
    /// <summary>An unused slot: type 0 or no sectors.</summary>
    public bool IsEmpty => Type == 0 || SectorCount == 0;

    /// <summary>A container of logical partitions (DOS, Windows LBA and Linux extended types).</summary>
    public bool IsExtended => Type is 0x05 or 0x0F or 0x85;
}

/// <summary>A parsed MBR or EBR sector.</summary>
internal sealed class MbrRecord
{
    /// <summary>Every MBR is one 512-byte sector, whatever the disk's logical block size.</summary>
    public const int Size = 512;
    internal const int EntriesOffset = 0x1BE, EntrySize = 16, EntryCount = 4, SignatureOffset = 0x1FE;
    internal const int StatusOffset = 0, TypeOffset = 4, StartLbaOffset = 8, SectorCountOffset = 12;
    /// <summary>The boot signature bytes 0x55 0xAA, read as a little-endian 16-bit value.</summary>
    public const ushort Signature = 0xAA55;
    /// <summary>OSType of a GPT protective partition record (§5.2.3).</summary>
    public const byte ProtectiveType = 0xEE;

    private MbrRecord(MbrEntry[] entries) => Entries = entries;

    /// <summary>The four records in slot order (empty slots included).</summary>
    public IReadOnlyList<MbrEntry> Entries { get; }

    /// <summary>True when any record is a GPT protective one.</summary>
    public bool IsProtective => Entries.Any(e => e.Type == ProtectiveType && !e.IsEmpty);

    /// <summary>True when <paramref name="sector"/> ends with the 0x55AA boot signature.</summary>
    public static bool HasSignature(ReadOnlySpan<byte> sector) =>
        sector.Length >= Size && BinaryPrimitives.ReadUInt16LittleEndian(sector[SignatureOffset..]) == Signature;

    /// <summary>
    /// Parses <paramref name="sector"/> as a partition table, or returns null (with the reason) when it is not one:
    /// no 0x55AA signature, or a boot indicator other than 0x00 and 0x80 (which is how a FAT or NTFS boot sector,
    /// which also ends in 0x55AA, is told apart, as libblkid and Linux's msdos parser do).
    /// </summary>
    public static MbrRecord? TryParse(ReadOnlySpan<byte> sector, out string? reason)
    {
        reason = null;
        if (!HasSignature(sector))
        {
            reason = "no 0x55AA boot signature";
            return null;
        }
        var entries = new MbrEntry[EntryCount];
        for (int i = 0; i < EntryCount; i++)
        {
            var e = sector.Slice(EntriesOffset + i * EntrySize, EntrySize);
            entries[i] = new MbrEntry(e[StatusOffset], e[TypeOffset],
                BinaryPrimitives.ReadUInt32LittleEndian(e[StartLbaOffset..]), BinaryPrimitives.ReadUInt32LittleEndian(e[SectorCountOffset..]));
            if (entries[i].Status is not (0x00 or 0x80))
            {
                reason = $"partition record {i + 1} has boot indicator 0x{entries[i].Status:x2} (only 0x00 and 0x80 are valid)";
                return null;
            }
        }
        return new MbrRecord(entries);
    }
}
