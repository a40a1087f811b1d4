// What Compare-VDisk writes to the pipeline: the outcome of `qemu-img compare` as an object. Offsets are guest
// byte offsets.
using VDisk.Engine.Operations;

namespace VDisk.PowerShell;

/// <summary>The outcome of comparing the guest content of two images.</summary>
public sealed class VDiskComparison
{
    /// <summary>Full path of the first image.</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>Full path of the image it was compared with.</summary>
    public string DifferencePath { get; init; } = string.Empty;

    /// <summary>True when the guest sees the same bytes in both (and, with -Strict, same size and allocation).</summary>
    public bool Equal { get; init; }

    /// <summary>Guest byte offset of the first difference found, or null when the images are equal.</summary>
    public long? FirstDifferenceOffset { get; init; }

    /// <summary>True when the virtual sizes differ (not a difference by itself unless -Strict).</summary>
    public bool SizeDiffers { get; init; }

    /// <summary>With -Strict: the first offset where one image holds data and the other does not.</summary>
    public long? AllocationDifferenceOffset { get; init; }

    /// <summary>Why the images differ, in words, or null when they are equal.</summary>
    public string? Reason { get; init; }

    internal static VDiskComparison From(CompareResult result) => new()
    {
        Path = result.FirstPath,
        DifferencePath = result.SecondPath,
        Equal = result.Equal,
        FirstDifferenceOffset = result.FirstDifferenceOffset,
        SizeDiffers = result.SizeDiffers,
        AllocationDifferenceOffset = result.AllocationDifferenceOffset,
        Reason = result.Reason,
    };
}
