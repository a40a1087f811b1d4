// What Get-VDiskChain writes to the pipeline: one object per image of a backing chain, top first,
// as `qemu-img info --backing-chain` lists them. Sizes are bytes.
using VDisk.Engine.Operations;

namespace VDisk.PowerShell;

/// <summary>One image of a backing chain.</summary>
public sealed class VDiskChainNode
{
    /// <summary>0 for the image asked about, 1 for its backing image, and so on down the chain.</summary>
    public int Depth { get; init; }

    /// <summary>Full path of this layer's file.</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>This layer's format.</summary>
    public VDiskFormat Format { get; init; }

    /// <summary>Size of the disk the guest sees through this layer, in bytes.</summary>
    public long VirtualSize { get; init; }

    /// <summary>Bytes this layer's files occupy on the host.</summary>
    public long FileSize { get; init; }

    /// <summary>Guest bytes whose data this layer itself holds (the rest falls through to the layer beneath).</summary>
    public long AllocatedBytes { get; init; }

    /// <summary>The backing file name exactly as stored in this layer, or null at the bottom of the chain.</summary>
    public string? BackingPath { get; init; }

    /// <summary>The backing format recorded in this layer, or null when none is recorded.</summary>
    public VDiskFormat? BackingFormat { get; init; }

    internal static VDiskChainNode From(ChainNodeInfo node) => new()
    {
        Depth = node.Depth,
        Path = node.Path,
        Format = node.Format.ToVDiskFormat(),
        VirtualSize = node.VirtualSize,
        FileSize = node.FileSize,
        AllocatedBytes = node.AllocatedBytes,
        BackingPath = node.BackingPath,
        BackingFormat = node.BackingFormat?.ToVDiskFormat(),
    };
}
