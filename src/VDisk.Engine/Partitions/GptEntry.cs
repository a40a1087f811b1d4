// One GPT partition entry (UEFI 2.10 §5.3.3 "GPT Partition Entry Array", Table 5-6): PartitionTypeGUID,
// UniquePartitionGUID, StartingLBA, EndingLBA (inclusive), Attributes (Table 5-7: bit 0 required, bit 1 no block
// IO protocol, bit 2 legacy BIOS bootable, bits 48-63 type-specific) and a 36-character UTF-16LE PartitionName.
// A zero type GUID marks an unused entry. GUIDs are stored in the mixed-endian layout .NET's Guid(bytes) reads.
using System.Buffers.Binary;
using System.Text;

namespace VDisk.Engine.Partitions;

/// <summary>A parsed GPT partition entry.</summary>
internal readonly record struct GptEntry(Guid Type, Guid Unique, ulong FirstLba, ulong LastLba, ulong Attributes, string Name)
{
    internal const int TypeOffset = 0, UniqueOffset = 16, FirstLbaOffset = 32, LastLbaOffset = 40, AttributesOffset = 48,
        NameOffset = 56, NameBytes = 72;
    /// <summary>Attribute bit 2, "Legacy BIOS Bootable".</summary>
    public const ulong LegacyBiosBootable = 1UL << 2;

    /// <summary>An unused entry (type GUID all zero).</summary>
    public bool IsEmpty => Type == Guid.Empty;

    /// <summary>Parses the entry at the start of <paramref name="entry"/> (at least 128 bytes).</summary>
    public static GptEntry Parse(ReadOnlySpan<byte> entry)
    {
        var name = entry.Slice(NameOffset, NameBytes);
        int chars = 0;
        while (chars < NameBytes / 2 && BinaryPrimitives.ReadUInt16LittleEndian(name[(chars * 2)..]) != 0) chars++;
        return new GptEntry(new Guid(entry.Slice(TypeOffset, 16)), new Guid(entry.Slice(UniqueOffset, 16)),
            BinaryPrimitives.ReadUInt64LittleEndian(entry[FirstLbaOffset..]), BinaryPrimitives.ReadUInt64LittleEndian(entry[LastLbaOffset..]),
            BinaryPrimitives.ReadUInt64LittleEndian(entry[AttributesOffset..]), Encoding.Unicode.GetString(name[..(chars * 2)]));
    }
}
