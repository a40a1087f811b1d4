// How an image (and its backing chain) is opened (DESIGN.md "Chain": open policy).
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Chain;

/// <summary>Options for opening an image.</summary>
public sealed record OpenOptions
{
    /// <summary>Open the top image for writing. Backing images are always opened read-only.</summary>
    public bool Writable { get; init; }
    /// <summary>Force a format instead of probing the magic bytes.</summary>
    public ImageFormat? Format { get; init; }
    /// <summary>Open the backing chain (false: unallocated ranges read as zeroes, like qemu-img's -U/no backing).</summary>
    public bool OpenBacking { get; init; } = true;
    /// <summary>Cache mode of the top image.</summary>
    public CacheMode CacheMode { get; init; } = CacheMode.Writeback;
    /// <summary>Cache mode of backing images.</summary>
    public CacheMode BackingCacheMode { get; init; } = CacheMode.Writeback;

    /// <summary>Open the state of this internal snapshot (id or name) of the top image instead of its current state; read-only.</summary>
    public string? Snapshot { get; init; }

    /// <summary>
    /// Read without locking and without checking other processes' locks, like qemu-img's -U (force share): for
    /// inspecting images a running VM has open. The content may be changing underneath; only for read-only opens.
    /// </summary>
    public bool ForceShare { get; init; }

    /// <summary>Read-only, whole chain, writeback.</summary>
    public static OpenOptions ReadOnly { get; } = new();
}
