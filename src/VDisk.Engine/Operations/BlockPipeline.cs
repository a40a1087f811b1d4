// The one block pipeline (DESIGN.md "Operations": heavy copying is one reusable pipeline driven by extents).
// A planner walks block status and hands out chunks that may hold data, in guest order; a CPU stage runs on
// worker threads (read, zero-detect, hash, compress, compare); one consumer applies the results strictly in
// guest order on the calling thread (writes, progress, early stop). Convert and compare run on it today;
// measure, commit, optimize and backup are meant to.
using System.Buffers;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>A guest range the pipeline processes as one piece.</summary>
internal readonly record struct Chunk(long Offset, int Length);

/// <summary>Ordered parallel processing of chunks.</summary>
internal static class BlockPipeline
{
    /// <summary>Bytes per chunk unless a unit is larger (a 2 MiB qcow2 cluster is compressed whole).</summary>
    public const int ChunkBytes = 1 << 20;

    /// <summary>
    /// Runs <paramref name="process"/> for every chunk (a <see cref="Chunk"/>, or one with what to do there) on up to
    /// <paramref name="workers"/> threads (at most 2 x workers + 1 chunks in flight) and <paramref name="apply"/> on the calling thread in chunk order; <paramref name="apply"/>
    /// returning false stops the run. <paramref name="release"/> gets every result once, applied or not.
    /// </summary>
    public static void Run<TChunk, T>(IEnumerable<TChunk> chunks, Func<TChunk, T> process, Func<T, bool> apply, Action<T> release,
        int workers, CancellationToken cancel)
    {
        var scheduler = new ConcurrentExclusiveSchedulerPair(TaskScheduler.Default, workers).ConcurrentScheduler;
        var inFlight = new Queue<Task<T>>();
        int maxInFlight = workers * 2 + 1;
        try
        {
            foreach (var chunk in chunks)
            {
                cancel.ThrowIfCancellationRequested();
                while (inFlight.Count >= maxInFlight)
                    if (!ApplyNext(inFlight, apply, release)) return;
                inFlight.Enqueue(Task.Factory.StartNew(() => process(chunk), cancel, TaskCreationOptions.None, scheduler));
            }
            while (inFlight.Count > 0)
                if (!ApplyNext(inFlight, apply, release)) return;
        }
        finally
        {
            foreach (var pending in inFlight)
            {
                try { pending.Wait(); } catch (AggregateException) { }
                if (pending.IsCompletedSuccessfully) release(pending.Result);
            }
        }
    }

    /// <summary>
    /// Chunks covering the ranges, each range widened to whole <paramref name="unit"/>s (but not past
    /// <paramref name="size"/>), overlaps merged, at most <see cref="ChunkSize"/> bytes each and unit-aligned.
    /// </summary>
    public static IEnumerable<Chunk> Chunks(IEnumerable<(long Offset, long Length)> ranges, int unit, long size)
    {
        long emittedEnd = 0, chunk = ChunkSize(unit);
        foreach (var (offset, length) in ranges)
        {
            long start = Math.Max(emittedEnd, offset / unit * unit);
            long stop = Math.Min(size, (offset + length + unit - 1) / unit * unit);
            for (long at = start; at < stop; at += chunk)
                yield return new Chunk(at, (int)Math.Min(chunk, stop - at));
            emittedEnd = Math.Max(emittedEnd, stop);
        }
    }

    /// <summary>Chunk size for a unit: about 1 MiB, a whole number of units, never less than one unit.</summary>
    public static int ChunkSize(int unit) => Math.Max(ChunkBytes / unit, 1) * unit;

    /// <summary>The runs of <paramref name="disk"/> from <paramref name="start"/> to <paramref name="end"/> whose block status is data.</summary>
    public static IEnumerable<(long Offset, long Length)> DataRuns(VirtualDisk disk, long start, long end, CancellationToken cancel)
    {
        end = Math.Min(end, disk.Length);
        for (long pos = start; pos < end;)
        {
            cancel.ThrowIfCancellationRequested();
            var status = disk.GetBlockStatus(pos, end - pos);
            if (status.Kind == ExtentKind.Data) yield return (pos, status.Length);
            pos += status.Length;
        }
    }

    private static bool ApplyNext<T>(Queue<Task<T>> inFlight, Func<T, bool> apply, Action<T> release)
    {
        var result = inFlight.Dequeue().GetAwaiter().GetResult();
        try
        {
            return apply(result);
        }
        finally
        {
            release(result);
        }
    }
}

/// <summary>A chunk's data in a pooled, 4 KiB-aligned buffer (direct I/O needs no bounce copy for it).</summary>
internal sealed class ChunkBuffer : IDisposable
{
    private readonly IMemoryOwner<byte> _owner;

    public ChunkBuffer(Chunk chunk)
    {
        Chunk = chunk;
        _owner = AlignedBufferPool.Shared.Rent(chunk.Length);
    }

    public Chunk Chunk { get; }
    public Span<byte> Span => _owner.Memory.Span;
    public Memory<byte> Memory => _owner.Memory;

    public void Dispose() => _owner.Dispose();
}
