// What Optimize-VDisk writes: the space one image gave back, in bytes (the table view shows them for people).
using VDisk.Engine.Operations;

namespace VDisk.PowerShell;

/// <summary>The outcome of optimizing one image.</summary>
public sealed class VDiskOptimizeResult
{
    /// <summary>Full path of the image.</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>True for a full rewrite (-Full), false for the quick in-place mode.</summary>
    public bool Full { get; init; }

    /// <summary>Bytes of the file system the image gave back (its size on disk before minus after).</summary>
    public long BytesWonBack { get; init; }

    /// <summary>The file's size on disk before, in bytes.</summary>
    public long AllocatedBefore { get; init; }

    /// <summary>The file's size on disk after, in bytes.</summary>
    public long AllocatedAfter { get; init; }

    /// <summary>The file's length before, in bytes.</summary>
    public long LengthBefore { get; init; }

    /// <summary>The file's length after, in bytes.</summary>
    public long LengthAfter { get; init; }

    /// <summary>Quick mode: guest clusters that read as zeroes and no longer take space.</summary>
    public long ZeroedClusters { get; init; }

    /// <summary>Quick mode: leaked clusters given back.</summary>
    public long LeaksFreed { get; init; }

    internal static VDiskOptimizeResult From(OptimizeResult r) => new()
    {
        Path = r.Path,
        Full = r.Full,
        BytesWonBack = r.BytesWonBack,
        AllocatedBefore = r.AllocatedBefore,
        AllocatedAfter = r.AllocatedAfter,
        LengthBefore = r.LengthBefore,
        LengthAfter = r.LengthAfter,
        ZeroedClusters = r.ZeroedClusters,
        LeaksFreed = r.LeaksFreed,
    };
}
