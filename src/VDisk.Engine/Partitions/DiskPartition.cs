// What the partition reader finds on a disk: the table (MBR, GPT or none) and its partitions in bytes, each with
// the file system recognised inside it. These are the records Mount-VDisk and Get-VDiskPartition consume.
namespace VDisk.Engine.Partitions;

/// <summary>The kind of partition table on a disk.</summary>
public enum PartitionTableType
{
    /// <summary>No partition table: a whole-disk file system (partition 0) or nothing recognised.</summary>
    None,
    /// <summary>A DOS (MBR) table, with logical partitions in an EBR chain.</summary>
    Mbr,
    /// <summary>A GUID Partition Table.</summary>
    Gpt,
}

/// <summary>Which GPT header the partitions were read from.</summary>
public enum GptHeaderUsed
{
    /// <summary>The primary header at LBA 1.</summary>
    Primary,
    /// <summary>The backup header at the last LBA (the primary is damaged or missing).</summary>
    Backup,
}

/// <summary>One partition (or the whole-disk file system, number 0).</summary>
public sealed record DiskPartition
{
    /// <summary>1–4 for MBR primary slots, 5 and up for logical partitions, the entry index + 1 for GPT, 0 for a whole disk.</summary>
    public int Number { get; init; }
    /// <summary>Offset of the first byte on the disk.</summary>
    public long Start { get; init; }
    /// <summary>Length in bytes.</summary>
    public long Size { get; init; }
    /// <summary>Offset just past the partition.</summary>
    public long End => Start + Size;
    /// <summary>The table the partition is in.</summary>
    public PartitionTableType TableType { get; init; }
    /// <summary>The MBR type byte ("0x83") or GPT type GUID (upper case, as sfdisk prints it); empty for a whole disk.</summary>
    public string Type { get; init; } = string.Empty;
    /// <summary>The MBR type byte, for MBR partitions.</summary>
    public byte? MbrType { get; init; }
    /// <summary>The GPT partition type GUID, for GPT partitions.</summary>
    public Guid? TypeGuid { get; init; }
    /// <summary>The friendly name of the type ("Linux filesystem", "EFI System", ...), "unknown", or empty for a whole disk.</summary>
    public string TypeName { get; init; } = string.Empty;
    /// <summary>The GPT partition name; null for MBR.</summary>
    public string? Name { get; init; }
    /// <summary>The GPT unique partition GUID; null for MBR.</summary>
    public Guid? PartitionGuid { get; init; }
    /// <summary>MBR boot indicator 0x80, or GPT attribute bit 2 (legacy BIOS bootable).</summary>
    public bool Bootable { get; init; }
    /// <summary>The GPT attribute bits (0 for MBR).</summary>
    public ulong Attributes { get; init; }
    /// <summary>An MBR extended partition (a container of logical partitions, never a file system).</summary>
    public bool IsExtended { get; init; }
    /// <summary>An MBR logical partition (from the EBR chain).</summary>
    public bool IsLogical { get; init; }
    /// <summary>The file system recognised inside (unknown when none is; extended containers are not probed).</summary>
    public FileSystemInfo FileSystem { get; init; } = FileSystemInfo.Unknown;
    /// <summary>What is wrong with this entry (it ends beyond the disk, ...), or null.</summary>
    public string? Problem { get; init; }
}

/// <summary>The partition table of a disk.</summary>
/// <param name="Path">The image the disk was read from (for messages).</param>
/// <param name="Type">MBR, GPT, or None.</param>
/// <param name="SectorSize">The logical block size the table uses: 512, or 4096 for a GPT found at LBA 1 of a 4K disk.</param>
/// <param name="DiskId">The GPT disk GUID, or the MBR disk signature as "0x1234abcd"; empty without a table.</param>
/// <param name="Header">The GPT header used (primary or backup); null for MBR and None.</param>
/// <param name="Partitions">The partitions in number order.</param>
/// <param name="Problems">Table-level problems that did not stop the reading (a damaged backup GPT, a broken EBR chain, ...), and every partition's problem.</param>
public sealed record PartitionTable(string Path, PartitionTableType Type, int SectorSize, string DiskId, GptHeaderUsed? Header,
    IReadOnlyList<DiskPartition> Partitions, IReadOnlyList<string> Problems);
