// Which file system a partition holds, by the magic numbers in its first 68 KiB, as libblkid's superblock probes
// look for them: ext2/3/4 (superblock at 1024, s_magic 0xEF53 at +0x38; ext3 = has_journal, ext4 = any feature
// beyond ext3's set — Linux fs/ext4/ext4.h EXT4_FEATURE_*), XFS ("XFSB" at 0), Btrfs ("_BHRfS_M" at 0x10040), NTFS
// and exFAT (OEM name at 3), FAT12/16/32 (the BPB of Microsoft's FAT specification §3.1; FAT32 when BPB_FATSz16 is
// zero, else FAT12/16 by cluster count, §3.5), Linux swap ("SWAPSPACE2"/"SWAP-SPACE" at the end of the first page, for 4, 8, 16 and 64 KiB pages),
// LVM2 physical volumes ("LABELONE" in one of the first four sectors, "LVM2 001" at +0x18) and LUKS ("LUKS\xBA\xBE").
using System.Buffers.Binary;
using System.Text;

namespace VDisk.Engine.Partitions;

/// <summary>A file system recognised by its magic.</summary>
/// <param name="Name">ext2, ext3, ext4, xfs, btrfs, ntfs, exfat, fat12, fat16, fat32, swap, lvm2, luks, or unknown.</param>
/// <param name="Details">What else the superblock says (ext features, LUKS version), or empty.</param>
public sealed record FileSystemInfo(string Name, string Details)
{
    /// <summary>Nothing recognised.</summary>
    public static FileSystemInfo Unknown { get; } = new("unknown", string.Empty);
}

/// <summary>Recognises file systems by their magic numbers.</summary>
public static class FileSystemProbe
{
    /// <summary>Bytes from the start of a partition the probe needs (Btrfs' superblock at 64 KiB, swap's 64 KiB page).</summary>
    public const int ProbeBytes = 0x11000;

    private const int ExtSuperblock = 1024, ExtMagicOffset = 0x38, ExtCompatOffset = 0x5C, ExtIncompatOffset = 0x60, ExtRoCompatOffset = 0x64;
    private const ushort ExtMagic = 0xEF53;
    private const int BtrfsMagicOffset = 0x10040;
    private static ReadOnlySpan<byte> LuksMagic => new byte[] { (byte)'L', (byte)'U', (byte)'K', (byte)'S', 0xBA, 0xBE };

    private static readonly (uint Bit, string Name)[] ExtCompat =
    {
        (0x1, "dir_prealloc"), (0x2, "imagic_inodes"), (0x4, "has_journal"), (0x8, "ext_attr"), (0x10, "resize_inode"),
        (0x20, "dir_index"), (0x200, "sparse_super2"), (0x400, "fast_commit"), (0x800, "stable_inodes"), (0x1000, "orphan_file"),
    };
    private static readonly (uint Bit, string Name)[] ExtIncompat =
    {
        (0x1, "compression"), (0x2, "filetype"), (0x4, "needs_recovery"), (0x8, "journal_dev"), (0x10, "meta_bg"),
        (0x40, "extent"), (0x80, "64bit"), (0x100, "mmp"), (0x200, "flex_bg"), (0x400, "ea_inode"), (0x1000, "dirdata"),
        (0x2000, "metadata_csum_seed"), (0x4000, "large_dir"), (0x8000, "inline_data"), (0x10000, "encrypt"), (0x20000, "casefold"),
    };
    private static readonly (uint Bit, string Name)[] ExtRoCompat =
    {
        (0x1, "sparse_super"), (0x2, "large_file"), (0x8, "huge_file"), (0x10, "uninit_bg"), (0x20, "dir_nlink"),
        (0x40, "extra_isize"), (0x100, "quota"), (0x200, "bigalloc"), (0x400, "metadata_csum"), (0x1000, "read-only"),
        (0x2000, "project"), (0x4000, "shared_blocks"), (0x8000, "verity"), (0x10000, "orphan_present"),
    };
    // What ext3 supports (Linux EXT3_FEATURE_*_SUPP): anything else makes the file system ext4, as libblkid decides.
    private const uint Ext3Incompat = 0x2 | 0x4 | 0x10, Ext3RoCompat = 0x1 | 0x2 | 0x4;

    /// <summary>
    /// Recognises the file system whose first bytes are <paramref name="head"/> (up to <see cref="ProbeBytes"/>; fewer
    /// when the partition is smaller, and then only the probes whose magic lies inside are tried).
    /// </summary>
    public static FileSystemInfo Probe(ReadOnlySpan<byte> head)
    {
        if (Ext(head) is { } ext) return ext;
        if (Has(head, 0, "XFSB"u8)) return new("xfs", string.Empty);
        if (Has(head, BtrfsMagicOffset, "_BHRfS_M"u8)) return new("btrfs", string.Empty);
        if (Has(head, 3, "NTFS    "u8)) return new("ntfs", string.Empty);
        if (Has(head, 3, "EXFAT   "u8)) return new("exfat", string.Empty);
        if (Has(head, 0, LuksMagic) && head.Length >= 8)
            return new("luks", $"LUKS version {BinaryPrimitives.ReadUInt16BigEndian(head[6..])}");
        for (int sector = 0; sector < 4; sector++)
            if (Has(head, sector * 512, "LABELONE"u8) && Has(head, sector * 512 + 0x18, "LVM2 001"u8)) return new("lvm2", string.Empty);
        foreach (int page in new[] { 4096, 8192, 16384, 65536 })
            if (Has(head, page - 10, "SWAPSPACE2"u8) || Has(head, page - 10, "SWAP-SPACE"u8)) return new("swap", $"page size {page}");
        if (Fat(head) is { } fat) return fat;
        return FileSystemInfo.Unknown;
    }

    private static bool Has(ReadOnlySpan<byte> head, int offset, ReadOnlySpan<byte> magic) =>
        head.Length >= offset + magic.Length && head.Slice(offset, magic.Length).SequenceEqual(magic);

    private static FileSystemInfo? Ext(ReadOnlySpan<byte> head)
    {
        if (head.Length < ExtSuperblock + 0x100) return null;
        var sb = head[ExtSuperblock..];
        if (BinaryPrimitives.ReadUInt16LittleEndian(sb[ExtMagicOffset..]) != ExtMagic) return null;
        uint compat = BinaryPrimitives.ReadUInt32LittleEndian(sb[ExtCompatOffset..]);
        uint incompat = BinaryPrimitives.ReadUInt32LittleEndian(sb[ExtIncompatOffset..]);
        uint roCompat = BinaryPrimitives.ReadUInt32LittleEndian(sb[ExtRoCompatOffset..]);
        var features = new List<string>();
        Names(ExtCompat, compat, features);
        Names(ExtIncompat, incompat, features);
        Names(ExtRoCompat, roCompat, features);
        string name = (incompat & 0x8) != 0 ? "jbd"
            : (incompat & ~Ext3Incompat) != 0 || (roCompat & ~Ext3RoCompat) != 0 ? "ext4"
            : (compat & 0x4) != 0 ? "ext3" : "ext2";
        return new(name, string.Join(' ', features));
    }

    private static void Names((uint Bit, string Name)[] table, uint value, List<string> into)
    {
        uint known = 0;
        foreach (var (bit, name) in table)
        {
            known |= bit;
            if ((value & bit) != 0) into.Add(name);
        }
        if ((value & ~known) != 0) into.Add($"0x{value & ~known:x}");
    }

    // Microsoft FAT specification §3.1 (BPB fields) and §3.5 (the type is decided by the count of clusters alone).
    private static FileSystemInfo? Fat(ReadOnlySpan<byte> head)
    {
        if (head.Length < 512 || !MbrRecord.HasSignature(head) || head[0] is not (0xEB or 0xE9)) return null;
        uint bytesPerSector = BinaryPrimitives.ReadUInt16LittleEndian(head[0x0B..]);
        uint sectorsPerCluster = head[0x0D];
        uint reserved = BinaryPrimitives.ReadUInt16LittleEndian(head[0x0E..]);
        uint fats = head[0x10];
        uint rootEntries = BinaryPrimitives.ReadUInt16LittleEndian(head[0x11..]);
        uint total = BinaryPrimitives.ReadUInt16LittleEndian(head[0x13..]);
        uint fatSize = BinaryPrimitives.ReadUInt16LittleEndian(head[0x16..]);
        bool fat32 = fatSize == 0; // BPB_FATSz16 zero: a FAT32 BPB, whatever the cluster count (as Linux and libblkid decide)
        if (total == 0) total = BinaryPrimitives.ReadUInt32LittleEndian(head[0x20..]);
        if (fat32) fatSize = BinaryPrimitives.ReadUInt32LittleEndian(head[0x24..]);
        if (bytesPerSector is not (512 or 1024 or 2048 or 4096) || sectorsPerCluster == 0 || !uint.IsPow2(sectorsPerCluster)
            || reserved == 0 || fats is 0 or > 4 || fatSize == 0 || total == 0) return null;
        ulong rootSectors = (rootEntries * 32UL + bytesPerSector - 1) / bytesPerSector;
        ulong meta = reserved + (ulong)fats * fatSize + rootSectors;
        if (meta >= total) return null;
        ulong clusters = (total - meta) / sectorsPerCluster;
        string name = fat32 ? "fat32" : clusters < 4085 ? "fat12" : "fat16";
        var label = Encoding.ASCII.GetString(head.Slice(name == "fat32" ? 0x47 : 0x2B, 11)).TrimEnd(' ', '\0');
        return new(name, label.Length > 0 && label != "NO NAME" && label.All(c => c >= 0x20 && c < 0x7f) ? $"label {label}" : string.Empty);
    }
}
