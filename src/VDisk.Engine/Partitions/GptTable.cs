// A GUID Partition Table (UEFI 2.10 §5.3): the primary header at LBA 1 and its entry array, checked by both CRC-32s
// (§5.3.2); when the primary is missing or damaged, the backup header at the last LBA of the disk and its own entry
// array, and which one was used is reported. Entries (§5.3.3) that lie outside the disk or the usable range, or end
// before they start, are listed with a problem rather than dropped. Both headers damaged is a Corrupt error.
namespace VDisk.Engine.Partitions;

/// <summary>Reads a GPT.</summary>
internal static class GptTable
{
    /// <summary>Reads the GPT of a disk with <paramref name="sectorSize"/>-byte blocks whose LBA 1 carries the "EFI PART" signature.</summary>
    public static PartitionTable Read(PartitionReader.Disk disk, int sectorSize)
    {
        ulong sectors = (ulong)(disk.Length / sectorSize);
        var problems = new List<string>();
        var primary = TryLoad(disk, sectorSize, 1, sectors, out string? primaryReason);
        ulong backupLba = sectors - 1;
        var backup = TryLoad(disk, sectorSize, backupLba, sectors, out string? backupReason);
        if (backup is null && primary is { } p && p.Header.AlternateLba != backupLba && p.Header.AlternateLba < sectors && p.Header.AlternateLba > 1)
        {
            backupLba = p.Header.AlternateLba;
            backup = TryLoad(disk, sectorSize, backupLba, sectors, out backupReason);
        }
        if (primary is null && backup is null)
            throw disk.Corrupt($"the GPT is damaged: the primary header at LBA 1 ({sectorSize}-byte blocks) is not valid ({primaryReason}), "
                + $"and neither is the backup header at LBA {backupLba} ({backupReason}).");
        if (primary is null) problems.Add($"the primary GPT header at LBA 1 is not valid ({primaryReason}); the backup header at LBA {backupLba} was used.");
        else if (backup is null) problems.Add($"the backup GPT header at LBA {backupLba} is not valid ({backupReason}); the primary header was used.");
        var used = primary ?? backup!;
        return Build(disk, sectorSize, sectors, used, primary is null ? GptHeaderUsed.Backup : GptHeaderUsed.Primary, problems);
    }

    /// <summary>A protective MBR with no "EFI PART" at LBA 1: the primary header is gone, so only a backup header can be used.</summary>
    public static PartitionTable ReadBackupOnly(PartitionReader.Disk disk)
    {
        var reasons = new List<string>();
        foreach (int ss in new[] { 512, 4096 })
        {
            if (disk.Length < 2L * ss) continue;
            ulong sectors = (ulong)(disk.Length / ss);
            if (TryLoad(disk, ss, sectors - 1, sectors, out string? reason) is { } backup)
            {
                var problems = new List<string> { $"the primary GPT header at LBA 1 is missing (no \"EFI PART\" signature); the backup header at LBA {sectors - 1} was used." };
                return Build(disk, ss, sectors, backup, GptHeaderUsed.Backup, problems);
            }
            reasons.Add($"{ss}-byte blocks: backup header at LBA {sectors - 1}: {reason}");
        }
        throw disk.Corrupt($"the disk has a protective MBR (type 0xEE) but no valid GPT: the primary header at LBA 1 is missing, and no backup header is valid ({string.Join("; ", reasons)}).");
    }

    private sealed record Loaded(GptHeader Header, byte[] Entries);

    private static Loaded? TryLoad(PartitionReader.Disk disk, int sectorSize, ulong lba, ulong sectors, out string? reason)
    {
        reason = null;
        if (lba >= sectors)
        {
            reason = "it lies beyond the end of the disk";
            return null;
        }
        var sector = new byte[sectorSize];
        disk.TryRead((long)lba * sectorSize, sector);
        var header = GptHeader.TryParse(sector, sectorSize, lba, sectors, out reason);
        if (header is null) return null;
        var entries = new byte[header.EntryArrayBytes]; // ≤ GptHeader.MaxEntryArrayBytes, inside the disk (Validate)
        if (!disk.TryRead((long)header.EntryLba * sectorSize, entries))
        {
            reason = "its partition entry array lies beyond the end of the disk";
            return null;
        }
        uint crc = System.IO.Hashing.Crc32.HashToUInt32(entries);
        if (crc != header.EntryArrayCrc)
        {
            reason = $"partition entry array CRC-32 mismatch (stored 0x{header.EntryArrayCrc:x8}, computed 0x{crc:x8})";
            return null;
        }
        return new Loaded(header, entries);
    }

    private static PartitionTable Build(PartitionReader.Disk disk, int sectorSize, ulong sectors, Loaded table, GptHeaderUsed used, List<string> problems)
    {
        var h = table.Header;
        var parts = new List<DiskPartition>();
        for (int i = 0; i < h.EntryCount; i++)
        {
            var e = GptEntry.Parse(table.Entries.AsSpan(i * (int)h.EntrySize, (int)h.EntrySize));
            if (e.IsEmpty) continue;
            int number = i + 1;
            string? problem = e.LastLba < e.FirstLba ? $"partition {number} ends (LBA {e.LastLba}) before it starts (LBA {e.FirstLba})."
                : e.LastLba >= sectors ? $"partition {number} (LBA {e.FirstLba}..{e.LastLba}) extends beyond the end of the disk (last LBA {sectors - 1})."
                : e.FirstLba < h.FirstUsableLba || e.LastLba > h.LastUsableLba
                    ? $"partition {number} (LBA {e.FirstLba}..{e.LastLba}) is outside the usable range LBA {h.FirstUsableLba}..{h.LastUsableLba}." : null;
            if (problem != null) problems.Add(problem);
            long start = Bytes(e.FirstLba, sectorSize);
            long size = e.LastLba < e.FirstLba ? 0 : Math.Min(Bytes(e.LastLba - e.FirstLba + 1, sectorSize), long.MaxValue - start);
            parts.Add(new DiskPartition
            {
                Number = number, Start = start, Size = size, TableType = PartitionTableType.Gpt,
                Type = e.Type.ToString("D").ToUpperInvariant(), TypeGuid = e.Type, TypeName = PartitionTypes.Name(e.Type),
                Name = e.Name, PartitionGuid = e.Unique, Attributes = e.Attributes, Bootable = (e.Attributes & GptEntry.LegacyBiosBootable) != 0,
                FileSystem = disk.Probe(start, size), Problem = problem,
            });
        }
        return new PartitionTable(disk.Path, PartitionTableType.Gpt, sectorSize, h.DiskGuid.ToString("D").ToUpperInvariant(), used, parts, problems);
    }

    /// <summary>Blocks to bytes, saturating (a hostile LBA may not fit in a long).</summary>
    private static long Bytes(ulong blocks, int sectorSize) => blocks > (ulong)(long.MaxValue / sectorSize) ? long.MaxValue : (long)blocks * sectorSize;
}
