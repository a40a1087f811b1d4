// Friendly names of common partition types: GPT type GUIDs (UEFI 2.10 §5.3.3 Table 5-7 for the EFI System and
// legacy MBR GUIDs; the rest as the Discoverable Partitions Specification, util-linux's libfdisk and Microsoft
// document them) and MBR type bytes (as util-linux's fdisk lists them).
namespace VDisk.Engine.Partitions;

/// <summary>Names of partition type GUIDs and MBR type bytes.</summary>
public static class PartitionTypes
{
    /// <summary>EFI System partition.</summary>
    public static readonly Guid EfiSystem = new("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    /// <summary>Linux filesystem data.</summary>
    public static readonly Guid LinuxFilesystem = new("0FC63DAF-8483-4772-8E79-3D69D8477DE4");

    private static readonly Dictionary<Guid, string> GptNames = new()
    {
        [EfiSystem] = "EFI System",
        [new Guid("024DEE41-33E7-11D3-9D69-0008C781F39F")] = "MBR partition scheme",
        [new Guid("21686148-6449-6E6F-744E-656564454649")] = "BIOS boot",
        [LinuxFilesystem] = "Linux filesystem",
        [new Guid("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F")] = "Linux swap",
        [new Guid("E6D6D379-F507-44C2-A23C-238F2A3DF928")] = "Linux LVM",
        [new Guid("A19D880F-05FC-4D3B-A006-743F0F84911E")] = "Linux RAID",
        [new Guid("CA7D7CCB-63ED-4C53-861C-1742536059CC")] = "Linux LUKS",
        [new Guid("BC13C2FF-59E6-4262-A352-B275FD6F7172")] = "Linux extended boot",
        [new Guid("933AC7E1-2EB4-4F13-B844-0E14E2AEF915")] = "Linux home",
        [new Guid("3B8F8425-20E0-4F3B-907F-1A25A76F98E8")] = "Linux server data",
        [new Guid("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")] = "Linux root (x86-64)",
        [new Guid("44479540-F297-41B2-9AF7-D131D5F0458A")] = "Linux root (x86)",
        [new Guid("B921B045-1DF0-41C3-AF44-4C6F280D3FAE")] = "Linux root (ARM-64)",
        [new Guid("8DA63339-0007-60C0-C436-083AC8230908")] = "Linux reserved",
        [new Guid("E3C9E316-0B5C-4DB8-817D-F92DF00215AE")] = "Microsoft reserved",
        [new Guid("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7")] = "Microsoft basic data",
        [new Guid("DE94BBA4-06D1-4D40-A16A-BFD50179D6AC")] = "Windows recovery environment",
        [new Guid("5808C8AA-7E8F-42E0-85D2-E1E90434CFB3")] = "Microsoft LDM metadata",
        [new Guid("AF9B60A0-1431-4F62-BC68-3311714A69AD")] = "Microsoft LDM data",
        [new Guid("48465300-0000-11AA-AA11-00306543ECAC")] = "Apple HFS/HFS+",
        [new Guid("7C3457EF-0000-11AA-AA11-00306543ECAC")] = "Apple APFS",
        [new Guid("516E7CB6-6ECF-11D6-8FF8-00022D09712B")] = "FreeBSD UFS",
        [new Guid("6A898CC3-1DD2-11B2-99A6-080020736631")] = "Solaris /usr & Apple ZFS",
    };

    private static readonly Dictionary<byte, string> MbrNames = new()
    {
        [0x01] = "FAT12", [0x04] = "FAT16 <32M", [0x05] = "Extended", [0x06] = "FAT16", [0x07] = "HPFS/NTFS/exFAT",
        [0x0B] = "W95 FAT32", [0x0C] = "W95 FAT32 (LBA)", [0x0E] = "W95 FAT16 (LBA)", [0x0F] = "W95 Ext'd (LBA)",
        [0x11] = "Hidden FAT12", [0x12] = "Compaq diagnostics", [0x14] = "Hidden FAT16 <32M", [0x16] = "Hidden FAT16",
        [0x17] = "Hidden HPFS/NTFS", [0x1B] = "Hidden W95 FAT32", [0x1C] = "Hidden W95 FAT32 (LBA)", [0x1E] = "Hidden W95 FAT16 (LBA)",
        [0x27] = "Hidden NTFS WinRE", [0x42] = "SFS", [0x82] = "Linux swap / Solaris", [0x83] = "Linux", [0x85] = "Linux extended",
        [0x86] = "NTFS volume set", [0x87] = "NTFS volume set", [0x8E] = "Linux LVM", [0xA5] = "FreeBSD", [0xA6] = "OpenBSD",
        [0xA8] = "Darwin UFS", [0xA9] = "NetBSD", [0xAB] = "Darwin boot", [0xAF] = "HFS / HFS+", [0xEE] = "GPT",
        [0xEF] = "EFI (FAT-12/16/32)", [0xFD] = "Linux raid autodetect",
    };

    /// <summary>The friendly name of a GPT partition type, or "unknown".</summary>
    public static string Name(Guid type) => GptNames.TryGetValue(type, out var name) ? name : "unknown";

    /// <summary>The friendly name of an MBR partition type byte, or "unknown".</summary>
    public static string Name(byte type) => MbrNames.TryGetValue(type, out var name) ? name : "unknown";
}
