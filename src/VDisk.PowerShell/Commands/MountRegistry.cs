// The mounts made in this process (Mount-VDisk): kept until Dismount-VDisk or the end of the process, when each is
// torn down (file systems unmounted, nbdfuse and fuse2fs stopped by pid, the NBD server stopped, folders removed).
using System.Collections.Concurrent;

namespace VDisk.PowerShell.Commands;

/// <summary>The mounts of the session.</summary>
internal static class MountRegistry
{
    private static readonly ConcurrentDictionary<int, VDiskMount> Active = new();
    private static int _hooked;

    /// <summary>Every mount still mounted, oldest first.</summary>
    public static IReadOnlyList<VDiskMount> All => Active.Values.OrderBy(m => m.Id).ToList();

    /// <summary>The mount of this session on <paramref name="mountPath"/>, or null.</summary>
    public static VDiskMount? At(string mountPath) =>
        Active.Values.FirstOrDefault(m => string.Equals(m.MountPath, Path.TrimEndingDirectorySeparator(mountPath), StringComparison.Ordinal));

    /// <summary>Keeps <paramref name="mount"/> until dismounted or the process ends.</summary>
    public static void Add(VDiskMount mount)
    {
        if (Interlocked.Exchange(ref _hooked, 1) == 0) AppDomain.CurrentDomain.ProcessExit += (_, _) => DismountAll();
        Active[mount.Id] = mount;
    }

    /// <summary>Tears a mount down; false when it was dismounted already.</summary>
    public static bool Dismount(VDiskMount mount, Action<string>? verbose = null)
    {
        Active.TryRemove(mount.Id, out _);
        lock (mount)
        {
            if (!mount.Mounted) return false;
            mount.Mounted = false;
        }
        mount.Session.Teardown(verbose);
        return true;
    }

    private static void DismountAll()
    {
        foreach (var mount in All)
        {
            try { Dismount(mount); }
            catch (Exception e) when (e is IOException or InvalidOperationException or UnauthorizedAccessException) { } // the process is ending anyway
        }
    }
}
