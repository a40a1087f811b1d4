// Comparing the guest content of two images (qemu-img compare): any formats, whole chains. Ranges that
// read as zero in both are skipped by block status; the rest is read and compared chunk by chunk.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;

namespace VDisk.Engine.Operations;

/// <summary>The outcome of a comparison.</summary>
public sealed record CompareResult
{
    public required string FirstPath { get; init; }
    public required string SecondPath { get; init; }
    /// <summary>True when the guest content is the same (and, in strict mode, sizes and allocation too).</summary>
    public required bool Equal { get; init; }
    /// <summary>Guest offset of the first difference, or null when equal.</summary>
    public long? FirstDifferenceOffset { get; init; }
    /// <summary>The virtual sizes differ.</summary>
    public required bool SizeDiffers { get; init; }
    /// <summary>Strict mode only: the first offset where the block status (data, zero, unallocated) differs.</summary>
    public long? AllocationDifferenceOffset { get; init; }
    /// <summary>Why the images differ, in words, or null.</summary>
    public string? Reason { get; init; }
}

/// <summary>Compares two images' guest content.</summary>
public static class CompareImages
{
    private const int ChunkBytes = 1 << 20;

    /// <summary>
    /// Compares <paramref name="first"/> with <paramref name="second"/>. Without <paramref name="strict"/> the part of the
    /// larger image beyond the smaller one must read as zero, as qemu-img compare requires; with it, sizes and
    /// allocation status must match too.
    /// </summary>
    public static CompareResult Run(string first, string second, bool strict = false, ImageFormat? firstFormat = null,
        ImageFormat? secondFormat = null, IProgress<OperationProgress>? progress = null, CancellationToken cancel = default)
    {
        using var a = ImageChain.Open(first, new OpenOptions { Format = firstFormat });
        using var b = ImageChain.Open(second, new OpenOptions { Format = secondFormat });
        var result = new CompareResult { FirstPath = a.Path, SecondPath = b.Path, Equal = true, SizeDiffers = a.Length != b.Length };
        if (strict && result.SizeDiffers)
            return result with { Equal = false, Reason = $"image sizes differ ({a.Length} and {b.Length} bytes)" };

        long common = Math.Min(a.Length, b.Length), total = Math.Max(a.Length, b.Length);
        var bufferA = new byte[ChunkBytes];
        var bufferB = new byte[ChunkBytes];
        for (long pos = 0; pos < common;)
        {
            cancel.ThrowIfCancellationRequested();
            var sa = a.GetBlockStatus(pos, Math.Min(common - pos, 1L << 40));
            var sb = b.GetBlockStatus(pos, Math.Min(common - pos, 1L << 40));
            long run = Math.Min(sa.Length, sb.Length);
            if (strict && sa.Kind != sb.Kind)
                return result with { Equal = false, FirstDifferenceOffset = pos, AllocationDifferenceOffset = pos, Reason = $"block status differs at offset {pos} ({sa.Kind} and {sb.Kind})" };
            if (!IsData(sa) && !IsData(sb))
            {
                pos += run;
                progress?.Report(new OperationProgress(pos, total));
                continue;
            }
            for (long end = pos + run; pos < end;)
            {
                int n = (int)Math.Min(ChunkBytes, end - pos);
                a.Read(pos, bufferA.AsSpan(0, n));
                b.Read(pos, bufferB.AsSpan(0, n));
                int same = bufferA.AsSpan(0, n).CommonPrefixLength(bufferB.AsSpan(0, n));
                if (same < n)
                    return result with { Equal = false, FirstDifferenceOffset = pos + same, Reason = $"content differs at offset {pos + same}" };
                pos += n;
                progress?.Report(new OperationProgress(pos, total));
            }
        }
        var larger = a.Length > b.Length ? a : b;
        long nonZero = FirstNonZero(larger, common, bufferA, cancel);
        progress?.Report(new OperationProgress(total, total));
        if (nonZero >= 0)
            return result with { Equal = false, FirstDifferenceOffset = nonZero, Reason = $"{larger.Path} holds data at offset {nonZero}, beyond the end of the smaller image" };
        return result;
    }

    private static bool IsData(BlockStatus s) => s.Kind == ExtentKind.Data;

    private static long FirstNonZero(VirtualDisk disk, long from, byte[] buffer, CancellationToken cancel)
    {
        for (long pos = from; pos < disk.Length;)
        {
            cancel.ThrowIfCancellationRequested();
            var s = disk.GetBlockStatus(pos, disk.Length - pos);
            if (s.Kind == ExtentKind.Data)
            {
                for (long end = pos + s.Length; pos < end;)
                {
                    int n = (int)Math.Min(buffer.Length, end - pos);
                    disk.Read(pos, buffer.AsSpan(0, n));
                    int at = buffer.AsSpan(0, n).IndexOfAnyExcept((byte)0);
                    if (at >= 0) return pos + at;
                    pos += n;
                }
            }
            else
            {
                pos += s.Length;
            }
        }
        return -1;
    }
}
