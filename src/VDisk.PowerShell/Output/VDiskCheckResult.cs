// What Test-VDisk writes: the health of one image, as qemu-img check --output=json reports it, after any repair.
// It carries Path, so it binds by property name into the next cmdlet (Test-VDisk | Where-Object -Not IsHealthy | ...).
using VDisk.Engine.Operations;

namespace VDisk.PowerShell;

/// <summary>What Test-VDisk -Repair may fix (qemu-img check -r).</summary>
public enum VDiskRepair
{
    /// <summary>Only check; change nothing.</summary>
    None,
    /// <summary>Give back leaked clusters (qemu-img check -r leaks).</summary>
    Leaks,
    /// <summary>Also raise refcounts lower than their references, fix COPIED flags and clear the dirty bit (-r all).</summary>
    All,
}

/// <summary>The outcome of checking (and perhaps repairing) one image.</summary>
public sealed class VDiskCheckResult
{
    /// <summary>Full path of the image.</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>The image's format.</summary>
    public VDiskFormat Format { get; init; }

    /// <summary>True when the check found no corruption, no leak and no check error, and the image is not left dirty.</summary>
    public bool IsHealthy { get; init; }

    /// <summary>Problems that could lose data (refcounts lower than references, broken pointers, overlapping metadata).</summary>
    public long Corruptions { get; init; }

    /// <summary>Clusters counted as used that nothing references: space lost, data safe.</summary>
    public long Leaks { get; init; }

    /// <summary>Structures that could not be checked at all.</summary>
    public long CheckErrors { get; init; }

    /// <summary>Corruptions the repair fixed.</summary>
    public long CorruptionsFixed { get; init; }

    /// <summary>Leaks the repair fixed.</summary>
    public long LeaksFixed { get; init; }

    /// <summary>qcow2: the dirty bit is still set (lazy refcounts after a crash); Test-VDisk -Repair All clears it.</summary>
    public bool Dirty { get; init; }

    /// <summary>qcow2: one past the last byte of the file in use.</summary>
    public long? ImageEndOffset { get; init; }

    /// <summary>qcow2: the virtual size in clusters.</summary>
    public long? TotalClusters { get; init; }

    /// <summary>qcow2: guest clusters with data of their own (normal, preallocated zero and compressed).</summary>
    public long? AllocatedClusters { get; init; }

    /// <summary>qcow2: allocated clusters not stored right after the one before them.</summary>
    public long? FragmentedClusters { get; init; }

    /// <summary>qcow2: compressed guest clusters.</summary>
    public long? CompressedClusters { get; init; }

    /// <summary>qcow2: fragmented clusters as a percentage of allocated ones (as qemu-img check prints it).</summary>
    public double? FragmentedPercent => AllocatedClusters is > 0 ? Math.Round(100.0 * FragmentedClusters!.Value / AllocatedClusters.Value, 2) : null;

    /// <summary>The first problems found, in words.</summary>
    public string[] Problems { get; init; } = Array.Empty<string>();

    /// <summary>Why the image cannot be repaired safely (empty when it can).</summary>
    public string[] Unrepairable { get; init; } = Array.Empty<string>();

    /// <summary>A repair was asked for and refused because of damage it cannot fix safely; the file was not changed.</summary>
    public bool RepairRefused { get; init; }

    internal static VDiskCheckResult From(CheckResult r) => new()
    {
        Path = r.Path,
        Format = r.Format.ToVDiskFormat(),
        IsHealthy = r.IsHealthy,
        Corruptions = r.Corruptions,
        Leaks = r.Leaks,
        CheckErrors = r.CheckErrors,
        CorruptionsFixed = r.CorruptionsFixed,
        LeaksFixed = r.LeaksFixed,
        Dirty = r.Dirty,
        ImageEndOffset = r.ImageEndOffset,
        TotalClusters = r.TotalClusters,
        AllocatedClusters = r.AllocatedClusters,
        FragmentedClusters = r.FragmentedClusters,
        CompressedClusters = r.CompressedClusters,
        Problems = r.Problems.ToArray(),
        Unrepairable = r.Unrepairable.ToArray(),
        RepairRefused = r.RepairRefused,
    };
}
