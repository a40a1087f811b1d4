// What Get-VDiskSnapshot and Checkpoint-VDisk write: one internal snapshot of an image (qemu-img snapshot -l).
// It carries Path and Id, so it binds by property name into Restore-VDiskSnapshot and Remove-VDiskSnapshot.
using VDisk.Engine.Operations;

namespace VDisk.PowerShell;

/// <summary>One internal snapshot of a qcow2 image.</summary>
public sealed class VDiskSnapshot
{
    /// <summary>Full path of the image holding the snapshot.</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>The snapshot's id, unique in its image ("1", "2", ...).</summary>
    public string Id { get; init; } = string.Empty;

    /// <summary>The snapshot's name (names may repeat; ids do not).</summary>
    public string Name { get; init; } = string.Empty;

    /// <summary>When the snapshot was taken, in local time (like a file's CreationTime).</summary>
    public DateTime CreationTime { get; init; }

    /// <summary>The guest clock when the snapshot was taken (zero for a disk-only snapshot).</summary>
    public TimeSpan VmClock { get; init; }

    /// <summary>Bytes of saved VM state (RAM, devices) stored with the snapshot; 0 for a disk-only snapshot.</summary>
    public long VmStateSize { get; init; }

    /// <summary>The virtual size the snapshot records, in bytes; restoring it restores this size.</summary>
    public long DiskSize { get; init; }

    internal static VDiskSnapshot From(SnapshotInfo s) => new()
    {
        Path = s.Path,
        Id = s.Id,
        Name = s.Name,
        CreationTime = DateTime.SpecifyKind(s.Created, DateTimeKind.Utc).ToLocalTime(),
        VmClock = s.VmClock,
        VmStateSize = s.VmStateSize,
        DiskSize = s.DiskSize,
    };
}
