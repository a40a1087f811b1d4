// Mount-VDisk's second way to mount a partition (issue 12: "or the kernel's loop mount where the caller may mount"):
// file systems fuse2fs does not read (xfs, btrfs, FAT, exFAT, NTFS) are mounted by the kernel from a read-only loop
// device over the nbdfuse file (losetup --read-only --offset --sizelimit, then mount -o ro). Whether this process may
// do that is decided before trying, so a partition skipped for it says exactly why: the mount(2) and loop ioctls
// need CAP_SYS_ADMIN (root, in practice); /dev/loop-control must exist (no loop driver, or a container given no loop
// devices, otherwise); losetup, mount and umount must be installed (Debian package mount). Whether the kernel has
// the file system's driver is /proc/filesystems (a module may still load on demand: the mount is tried anyway, and
// its own message reported).
using System.Globalization;

namespace VDisk.PowerShell.Commands;

/// <summary>Whether the kernel's loop mount can be used, and which file systems go through it.</summary>
internal static class LoopMount
{
    /// <summary>The Debian package with losetup, mount and umount.</summary>
    public const string Package = "mount";

    /// <summary>The kernel file system type of each file system (as the engine's probe names it) mounted through a loop device.</summary>
    public static readonly IReadOnlyDictionary<string, string> KernelTypes = new Dictionary<string, string>
    {
        ["xfs"] = "xfs",
        ["btrfs"] = "btrfs",
        ["fat12"] = "vfat",
        ["fat16"] = "vfat",
        ["fat32"] = "vfat",
        ["exfat"] = "exfat",
        ["ntfs"] = "ntfs3",
    };

    /// <summary>Mount options beyond ro per kernel type: never replay a journal (the device is read-only), allow a clone's UUID.</summary>
    public static string Options(string kernelType) => kernelType switch
    {
        "xfs" => "ro,norecovery,nouuid",
        "btrfs" => "ro,rescue=nologreplay",
        _ => "ro",
    };

    private const int CapSysAdmin = 21;

    /// <summary>Null when this process can set up loop devices and mount; otherwise why not, in words.</summary>
    public static string? Unavailable()
    {
        foreach (string tool in new[] { "losetup", "mount", "umount" })
            if (ToolLocator.Find(tool) == null)
                return $"{tool} is not installed (or not on PATH): install the Debian package {Package} (apt-get install {Package})";
        if (!HasCapSysAdmin(out string who))
            return $"mounting is not permitted: {who}, and the kernel's loop mount needs CAP_SYS_ADMIN (run as root)";
        if (!File.Exists("/dev/loop-control"))
            return "no loop device: /dev/loop-control does not exist (the kernel has no loop driver, or this container was given no loop devices)";
        try
        {
            using var handle = File.OpenHandle("/dev/loop-control", FileMode.Open, FileAccess.ReadWrite);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return $"no loop device: /dev/loop-control cannot be opened ({e.Message})";
        }
        return null;
    }

    /// <summary>True when the kernel lists <paramref name="kernelType"/> in /proc/filesystems.</summary>
    public static bool KernelHas(string kernelType)
    {
        try
        {
            return File.ReadLines("/proc/filesystems").Any(line => line.Split('\t', StringSplitOptions.RemoveEmptyEntries).LastOrDefault()?.Trim() == kernelType);
        }
        catch (IOException)
        {
            return false;
        }
    }

    // CapEff of /proc/self/status, bit 21; `who` says what the process is when it lacks it.
    private static bool HasCapSysAdmin(out string who)
    {
        who = "this process";
        try
        {
            string? uid = null;
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("Uid:", StringComparison.Ordinal)) uid = line.Split('\t', StringSplitOptions.RemoveEmptyEntries)[2];
                if (!line.StartsWith("CapEff:", StringComparison.Ordinal)) continue;
                ulong caps = ulong.Parse(line[7..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                who = uid == "0" ? "this process runs as root without CAP_SYS_ADMIN (a restricted container)" : $"this process runs as user id {uid}, not root, without CAP_SYS_ADMIN";
                return (caps & (1UL << CapSysAdmin)) != 0;
            }
        }
        catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException)
        {
            who = $"the capabilities of this process cannot be read ({e.Message})";
        }
        return false;
    }

    /// <summary>The backing file of loop device <paramref name="device"/> (/dev/loopN), or null when it has none.</summary>
    public static string? BackingFile(string device)
    {
        try
        {
            return File.ReadAllText($"/sys/block/{Path.GetFileName(device)}/loop/backing_file").Trim();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
