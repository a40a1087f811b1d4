// What Get-VDiskPartition writes: one partition of a disk image (MBR, GPT, or a whole-disk file system as partition
// 0), in bytes, with the file system recognised inside it and the image's Path so partitions group and bind by image.
using VDisk.Engine.Partitions;

namespace VDisk.PowerShell;

/// <summary>One partition of a disk image.</summary>
public sealed class VDiskPartition
{
    /// <summary>Full path of the image (the top of its chain).</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>1–4 for MBR primary partitions, 5 and up for logical ones, the entry number for GPT, 0 for a whole-disk file system.</summary>
    public int Number { get; init; }

    /// <summary>Offset of the first byte on the disk.</summary>
    public long Start { get; init; }

    /// <summary>Length in bytes.</summary>
    public long Size { get; init; }

    /// <summary>Offset just past the partition (Start + Size).</summary>
    public long End { get; init; }

    /// <summary>The MBR type byte ("0x83") or GPT type GUID; empty for a whole-disk file system.</summary>
    public string Type { get; init; } = string.Empty;

    /// <summary>The type's friendly name ("Linux filesystem", "EFI System", "Linux LVM", ...), or "unknown".</summary>
    public string TypeName { get; init; } = string.Empty;

    /// <summary>The GPT partition name; null for MBR.</summary>
    public string? Name { get; init; }

    /// <summary>The file system found by its magic: ext2, ext3, ext4, xfs, btrfs, ntfs, exfat, fat12, fat16, fat32, swap, lvm2, luks, or unknown.</summary>
    public string FileSystem { get; init; } = "unknown";

    /// <summary>What the file system's superblock says besides (ext features, LUKS version, FAT label), or empty.</summary>
    public string FileSystemDetails { get; init; } = string.Empty;

    /// <summary>MBR boot flag (0x80) or the GPT "legacy BIOS bootable" attribute.</summary>
    public bool Bootable { get; init; }

    /// <summary>The GPT attribute bits (0 for MBR).</summary>
    public ulong Attributes { get; init; }

    /// <summary>The GPT unique partition GUID; null for MBR.</summary>
    public Guid? PartitionGuid { get; init; }

    /// <summary>MBR, GPT, or None (a whole-disk file system).</summary>
    public string TableType { get; init; } = "None";

    /// <summary>For GPT: Primary, or Backup when the primary header is damaged; null otherwise.</summary>
    public string? GptHeader { get; init; }

    /// <summary>The table's logical block size (512, or 4096 for a 4K-sector GPT).</summary>
    public int SectorSize { get; init; }

    /// <summary>An MBR extended partition (a container of logical partitions).</summary>
    public bool IsExtended { get; init; }

    /// <summary>An MBR logical partition.</summary>
    public bool IsLogical { get; init; }

    /// <summary>What is wrong with the entry (it extends beyond the disk, ...), or null.</summary>
    public string? Problem { get; init; }

    internal static VDiskPartition From(string path, PartitionTable table, DiskPartition p) => new()
    {
        Path = path,
        Number = p.Number,
        Start = p.Start,
        Size = p.Size,
        End = p.End,
        Type = p.Type,
        TypeName = p.TypeName,
        Name = p.Name,
        FileSystem = p.FileSystem.Name,
        FileSystemDetails = p.FileSystem.Details,
        Bootable = p.Bootable,
        Attributes = p.Attributes,
        PartitionGuid = p.PartitionGuid,
        TableType = p.TableType switch { PartitionTableType.Mbr => "MBR", PartitionTableType.Gpt => "GPT", _ => "None" },
        GptHeader = table.Header?.ToString(),
        SectorSize = table.SectorSize,
        IsExtended = p.IsExtended,
        IsLogical = p.IsLogical,
        Problem = p.Problem,
    };
}
