// What Mount-VDisk writes: one image mounted read-only as a file tree (Path, MountPath, the Partitions found, each
// mounted at MountPath/p<N> or skipped with a reason, the Pids of the nbdfuse and fuse2fs processes it started,
// StartTime). Dismount-VDisk takes these objects from the pipeline.
using VDisk.PowerShell.Commands;

namespace VDisk.PowerShell;

/// <summary>A disk image mounted read-only by Mount-VDisk.</summary>
public sealed class VDiskMount
{
    private static int _lastId;

    internal VDiskMount(string path, string mountPath, IReadOnlyList<VDiskMountPartition> partitions, MountSession session)
    {
        Id = Interlocked.Increment(ref _lastId);
        Path = path;
        MountPath = mountPath;
        Partitions = partitions;
        Session = session;
        StartTime = DateTime.Now;
    }

    internal MountSession Session { get; }

    /// <summary>A number that identifies the mount in this session.</summary>
    public int Id { get; }
    /// <summary>Full path of the mounted image (the top of its chain).</summary>
    public string Path { get; }
    /// <summary>The folder under which each partition is mounted as p&lt;N&gt;.</summary>
    public string MountPath { get; }
    /// <summary>Every partition found: mounted (MountedAt) or skipped (SkippedReason).</summary>
    public IReadOnlyList<VDiskMountPartition> Partitions { get; }
    /// <summary>The process ids of the nbdfuse and fuse2fs processes this mount started.</summary>
    public IReadOnlyList<int> Pids => Session.Pids;
    /// <summary>When the image was mounted.</summary>
    public DateTime StartTime { get; }
    /// <summary>False once dismounted.</summary>
    public bool Mounted { get; internal set; } = true;
    /// <summary>The folders where partitions are mounted.</summary>
    public IReadOnlyList<string> MountedAt => Partitions.Where(p => p.MountedAt != null).Select(p => p.MountedAt!).ToList();
}

/// <summary>One partition of a mounted image: where it is mounted, or why it was skipped.</summary>
public sealed class VDiskMountPartition
{
    /// <summary>The partition number (0 for a whole-disk file system).</summary>
    public int Number { get; init; }
    /// <summary>The file system found (ext4, xfs, ..., or unknown).</summary>
    public string FileSystem { get; init; } = "unknown";
    /// <summary>Offset of the partition on the disk.</summary>
    public long Start { get; init; }
    /// <summary>Length in bytes.</summary>
    public long Size { get; init; }
    /// <summary>The folder the file system is mounted on (read-only), or null when skipped.</summary>
    public string? MountedAt { get; init; }
    /// <summary>Why the partition was not mounted, or null when it was.</summary>
    public string? SkippedReason { get; init; }

    /// <inheritdoc/>
    public override string ToString() => MountedAt != null ? $"p{Number} {FileSystem} at {MountedAt}" : $"p{Number} {FileSystem} skipped";
}
