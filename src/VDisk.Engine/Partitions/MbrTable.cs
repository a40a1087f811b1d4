// A DOS partition table (UEFI 2.10 §5.2.1 "Legacy Master Boot Record"): four primary records numbered 1–4 by
// slot, and for each extended record (types 0x05, 0x0F, 0x85) the chain of Extended Boot Records inside it, as
// Linux's block/partitions/msdos.c walks it: an EBR's first record is a logical partition relative to that EBR,
// its second the next EBR relative to the start of the extended partition. Logical partitions are numbered from 5.
// The chain is bounded (MaxEbrs), must stay inside the extended partition, and may not revisit an EBR.
using System.Buffers.Binary;

namespace VDisk.Engine.Partitions;

/// <summary>Reads an MBR partition table.</summary>
internal static class MbrTable
{
    private const int SectorSize = MbrRecord.Size;
    private const int DiskSignatureOffset = 0x1B8;

    public static PartitionTable Read(PartitionReader.Disk disk, MbrRecord mbr, ReadOnlySpan<byte> sector0)
    {
        var parts = new List<DiskPartition>();
        var problems = new List<string>();
        int nextLogical = 5;
        for (int slot = 0; slot < MbrRecord.EntryCount; slot++)
        {
            var e = mbr.Entries[slot];
            if (e.IsEmpty) continue;
            parts.Add(Partition(disk, e, slot + 1, e.StartLba, logical: false, problems));
            if (e.IsExtended) ReadLogicals(disk, e, ref nextLogical, parts, problems);
        }
        parts.Sort((a, b) => a.Number.CompareTo(b.Number));
        string id = $"0x{BinaryPrimitives.ReadUInt32LittleEndian(sector0[DiskSignatureOffset..]):x8}";
        return new PartitionTable(disk.Path, PartitionTableType.Mbr, SectorSize, id, null, parts, problems);
    }

    private static void ReadLogicals(PartitionReader.Disk disk, MbrEntry extended, ref int number, List<DiskPartition> parts, List<string> problems)
    {
        ulong extStart = extended.StartLba, extEnd = extStart + extended.SectorCount;
        ulong ebr = extStart;
        var seen = new HashSet<ulong>();
        var sector = new byte[SectorSize];
        for (int count = 0; ; count++)
        {
            if (!seen.Add(ebr)) throw disk.Corrupt($"the extended partition's EBR chain loops back to LBA {ebr}.");
            if (count >= PartitionReader.MaxEbrs) throw disk.Corrupt($"the extended partition's EBR chain has more than {PartitionReader.MaxEbrs} links.");
            if (!disk.TryRead((long)ebr * SectorSize, sector))
            {
                problems.Add($"the EBR at LBA {ebr} lies beyond the end of the disk; logical partitions from there on are missing.");
                return;
            }
            var record = MbrRecord.TryParse(sector, out string? reason);
            if (record is null)
            {
                problems.Add($"the EBR at LBA {ebr} is not valid ({reason}); logical partitions from there on are missing.");
                return;
            }
            var logical = record.Entries[0];
            if (!logical.IsEmpty && !logical.IsExtended) parts.Add(Partition(disk, logical, number++, ebr + logical.StartLba, logical: true, problems));
            var link = record.Entries[1];
            if (link.IsEmpty || !link.IsExtended) return;
            ulong next = extStart + link.StartLba;
            if (next < extStart || next >= extEnd)
            {
                problems.Add($"the EBR at LBA {ebr} links to LBA {next}, outside the extended partition (LBA {extStart}..{extEnd - 1}); logical partitions from there on are missing.");
                return;
            }
            ebr = next;
        }
    }

    private static DiskPartition Partition(PartitionReader.Disk disk, MbrEntry e, int number, ulong startLba, bool logical, List<string> problems)
    {
        long start = (long)startLba * SectorSize, size = (long)e.SectorCount * SectorSize; // both < 2^33 sectors: no overflow
        string? problem = start + size > disk.Length
            ? $"partition {number} ends at byte {start + size}, beyond the end of the disk ({disk.Length} bytes)." : null;
        if (problem != null) problems.Add(problem);
        return new DiskPartition
        {
            Number = number, Start = start, Size = size, TableType = PartitionTableType.Mbr, Type = $"0x{e.Type:x2}", MbrType = e.Type,
            TypeName = PartitionTypes.Name(e.Type), Bootable = e.Status == 0x80, IsExtended = e.IsExtended, IsLogical = logical,
            FileSystem = e.IsExtended ? FileSystemInfo.Unknown : disk.Probe(start, size), Problem = problem,
        };
    }
}
