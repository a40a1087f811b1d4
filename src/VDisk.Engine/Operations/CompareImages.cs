// Comparing the guest content of two images (qemu-img compare): any formats, whole chains, on the block
// pipeline. Ranges that read as zero in both are skipped by block status; the rest is read and compared on
// worker threads, and the first difference in guest order wins.
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
    /// <summary>
    /// Compares <paramref name="first"/> with <paramref name="second"/>. Without <paramref name="strict"/> the part of the
    /// larger image beyond the smaller one must read as zero, as qemu-img compare requires; with it, sizes and
    /// allocation status must match too. Chunks are read and compared on <paramref name="workers"/> threads.
    /// </summary>
    public static CompareResult Run(string first, string second, bool strict = false, ImageFormat? firstFormat = null,
        ImageFormat? secondFormat = null, IProgress<OperationProgress>? progress = null, CancellationToken cancel = default, int workers = 0)
    {
        using var a = ImageChain.Open(first, new OpenOptions { Format = firstFormat });
        using var b = ImageChain.Open(second, new OpenOptions { Format = secondFormat });
        var result = new CompareResult { FirstPath = a.Path, SecondPath = b.Path, Equal = true, SizeDiffers = a.Length != b.Length };
        if (strict && result.SizeDiffers)
            return result with { Equal = false, Reason = $"image sizes differ ({a.Length} and {b.Length} bytes)" };

        long common = Math.Min(a.Length, b.Length), total = Math.Max(a.Length, b.Length);
        var larger = a.Length > b.Length ? a : b;
        var plan = new ComparePlan(a, b, common, strict, progress, total, cancel);
        CompareResult? difference = null;
        var chunks = BlockPipeline.Chunks(plan.Ranges(), 512, common)
            .Select(c => (c, Beyond: false))
            .Concat(BlockPipeline.Chunks(BlockPipeline.DataRuns(larger, common, total, cancel), 512, total).Select(c => (c, Beyond: true)));
        BlockPipeline.Run(chunks.Select(x => new Chunk(x.c.Offset, x.c.Length)),
            chunk => FirstDifference(chunk, chunk.Offset < common ? a : null, chunk.Offset < common ? b : larger),
            found =>
            {
                if (plan.StatusDifference is { } at && (found.Offset ?? found.End) >= at) // the earlier of the two differences wins
                {
                    difference = result with { Equal = false, FirstDifferenceOffset = at, AllocationDifferenceOffset = at, Reason = plan.StatusReason };
                    return false;
                }
                if (found.Offset is { } offset)
                {
                    difference = result with
                    {
                        Equal = false, FirstDifferenceOffset = offset,
                        Reason = offset < common ? $"content differs at offset {offset}" : $"{larger.Path} holds data at offset {offset}, beyond the end of the smaller image",
                    };
                    return false;
                }
                progress?.Report(new OperationProgress(found.End, total));
                return true;
            },
            _ => { }, workers > 0 ? workers : Environment.ProcessorCount, cancel);
        if (difference is null && plan.StatusDifference is { } late)
            difference = result with { Equal = false, FirstDifferenceOffset = late, AllocationDifferenceOffset = late, Reason = plan.StatusReason };
        progress?.Report(new OperationProgress(total, total));
        return difference ?? result;
    }

    // On a worker: the first differing byte of the chunk (against zeroes when `a` is null: the tail of the larger image).
    private static (long? Offset, long End) FirstDifference(Chunk chunk, VirtualDisk? a, VirtualDisk b)
    {
        using var bufferB = new ChunkBuffer(chunk);
        b.Read(chunk.Offset, bufferB.Span);
        int same;
        if (a is null)
        {
            same = bufferB.Span.IndexOfAnyExcept((byte)0);
            if (same < 0) same = chunk.Length;
        }
        else
        {
            using var bufferA = new ChunkBuffer(chunk);
            a.Read(chunk.Offset, bufferA.Span);
            same = bufferA.Span.CommonPrefixLength(bufferB.Span);
        }
        return (same < chunk.Length ? chunk.Offset + same : null, chunk.Offset + chunk.Length);
    }

    /// <summary>Walks both images' block status: the runs either may hold data in, and (strict) where the status first differs.</summary>
    private sealed class ComparePlan(VirtualDisk a, VirtualDisk b, long common, bool strict, IProgress<OperationProgress>? progress, long total, CancellationToken cancel)
    {
        public long? StatusDifference { get; private set; }
        public string? StatusReason { get; private set; }

        public IEnumerable<(long Offset, long Length)> Ranges()
        {
            for (long pos = 0; pos < common;)
            {
                cancel.ThrowIfCancellationRequested();
                var sa = a.GetBlockStatus(pos, Math.Min(common - pos, 1L << 40));
                var sb = b.GetBlockStatus(pos, Math.Min(common - pos, 1L << 40));
                long run = Math.Min(sa.Length, sb.Length);
                if (strict && sa.Kind != sb.Kind)
                {
                    StatusDifference = pos;
                    StatusReason = $"block status differs at offset {pos} ({sa.Kind} and {sb.Kind})";
                    yield break;
                }
                if (sa.Kind == ExtentKind.Data || sb.Kind == ExtentKind.Data) yield return (pos, run);
                else progress?.Report(new OperationProgress(pos + run, total));
                pos += run;
            }
        }
    }
}
