// The copy under commit, pull and rebase (qemu-img commit / rebase; DESIGN.md "Operations": one block pipeline). A
// planner walks block status on the calling thread and names guest ranges with what to do there: copy what the
// source reads, make the destination read zeroes, or copy only what differs from another image. Workers read and
// compare on the block pipeline; the writer applies the results in guest order through the destination's
// VirtualDisk. Units that read as zeroes become zero writes (metadata only where the format allows), so a
// commit or pull allocates no space for them. Every range written is recorded, so a rebase can undo its copy.
using VDisk.Engine.Core;

namespace VDisk.Engine.Operations;

/// <summary>What to do with one planned guest range.</summary>
internal enum ChainCopyAction
{
    /// <summary>Write what the source reads there (zero units as zero writes).</summary>
    Copy,
    /// <summary>Make the destination read zeroes there without reading anything.</summary>
    Zero,
    /// <summary>Write the source's units that differ from the comparison image (zero units as zero writes).</summary>
    CopyDifferences,
}

/// <summary>A planned guest range.</summary>
internal readonly record struct ChainCopyRange(long Offset, long Length, ChainCopyAction Action);

/// <summary>One copy from a source view into a destination disk.</summary>
internal sealed class ChainCopier
{
    private readonly VirtualDisk _source, _destination;
    private readonly VirtualDisk? _compareWith;
    private readonly int _unit, _workers;
    private readonly IProgress<OperationProgress>? _progress;
    private readonly CancellationToken _cancel;
    private readonly List<(long Offset, long Length)> _written = new();
    private long _total;

    /// <param name="source">What to copy from (the guest view being preserved).</param>
    /// <param name="destination">The disk written (a commit's base, a rebased image itself).</param>
    /// <param name="compareWith">For <see cref="ChainCopyAction.CopyDifferences"/>: the content the destination will read
    /// through once its backing file changes (null: none, it will read zeroes).</param>
    /// <param name="workers">Reader threads.</param>
    /// <param name="progress">Guest bytes done of the source's size.</param>
    /// <param name="cancel">Stops the copy between chunks.</param>
    public ChainCopier(VirtualDisk source, VirtualDisk destination, VirtualDisk? compareWith, int workers,
        IProgress<OperationProgress>? progress, CancellationToken cancel)
    {
        _source = source;
        _destination = destination;
        _compareWith = compareWith;
        _workers = Math.Max(1, workers);
        _progress = progress;
        _cancel = cancel;
        _unit = (int)Math.Min(Math.Max(destination.Driver.ClusterSize, 512), BlockPipeline.ChunkBytes);
    }

    /// <summary>Guest bytes written as data.</summary>
    public long BytesWritten { get; private set; }

    /// <summary>The guest ranges written so far (data or zeroes), in order, neighbours merged.</summary>
    public IReadOnlyList<(long Offset, long Length)> Written => _written;

    /// <summary>Runs the plan (ranges in ascending guest order); progress is the guest offset the writer has reached.</summary>
    public void Run(IEnumerable<ChainCopyRange> plan)
    {
        _total = _source.Length;
        BlockPipeline.Run(Chunks(plan), Process, Apply, result => result.Dispose(), _workers, _cancel);
        _progress?.Report(new OperationProgress(_total, _total));
    }

    // Ranges cut at the pipeline's chunk grid (absolute multiples of the chunk size, so units never straddle chunks).
    private IEnumerable<(Chunk Chunk, ChainCopyAction Action)> Chunks(IEnumerable<ChainCopyRange> plan)
    {
        long grid = BlockPipeline.ChunkSize(_unit);
        foreach (var range in plan)
        {
            for (long at = range.Offset, end = range.Offset + range.Length; at < end;)
            {
                long next = Math.Min(end, (at / grid + 1) * grid);
                yield return (new Chunk(at, (int)(next - at)), range.Action);
                at = next;
            }
        }
    }

    private Piece Process((Chunk Chunk, ChainCopyAction Action) work)
    {
        var piece = new Piece(work.Chunk);
        if (work.Action == ChainCopyAction.Zero)
        {
            piece.Add(Op.Zero, 0, work.Chunk.Length);
            return piece;
        }
        piece.Data = new ChunkBuffer(work.Chunk);
        var data = piece.Data.Span[..work.Chunk.Length];
        _source.Read(work.Chunk.Offset, data);
        ChunkBuffer? other = null;
        try
        {
            if (work.Action == ChainCopyAction.CopyDifferences)
            {
                other = new ChunkBuffer(work.Chunk);
                ReadComparison(work.Chunk, other.Span[..work.Chunk.Length]);
            }
            for (int at = 0; at < data.Length;)
            {
                long guest = work.Chunk.Offset + at;
                int n = (int)Math.Min(data.Length - at, _unit - guest % _unit);
                var unit = data.Slice(at, n);
                if (other != null && unit.SequenceEqual(other.Span.Slice(at, n))) { } // the same either way: nothing to write
                else if (unit.IndexOfAnyExcept((byte)0) < 0) piece.Add(Op.Zero, at, n);
                else piece.Add(Op.Data, at, n);
                at += n;
            }
        }
        finally
        {
            other?.Dispose();
        }
        return piece;
    }

    // The comparison image's content of the chunk; zeroes past its end, or everywhere when there is none.
    private void ReadComparison(Chunk chunk, Span<byte> into)
    {
        into.Clear();
        if (_compareWith is null || chunk.Offset >= _compareWith.Length) return;
        _compareWith.Read(chunk.Offset, into[..(int)Math.Min(into.Length, _compareWith.Length - chunk.Offset)]);
    }

    private bool Apply(Piece piece)
    {
        foreach (var (op, at, length) in piece.Ops)
        {
            _cancel.ThrowIfCancellationRequested();
            long guest = piece.Chunk.Offset + at;
            if (op == Op.Data)
            {
                _destination.Write(guest, piece.Data!.Span.Slice(at, length));
                BytesWritten += length;
            }
            else
            {
                _destination.WriteZeroes(guest, length);
            }
            Record(guest, length);
        }
        _progress?.Report(new OperationProgress(piece.Chunk.Offset + piece.Chunk.Length, _total));
        return true;
    }

    private void Record(long offset, long length)
    {
        if (_written.Count > 0 && _written[^1].Offset + _written[^1].Length == offset)
            _written[^1] = (_written[^1].Offset, _written[^1].Length + length);
        else
            _written.Add((offset, length));
    }

    private enum Op { Data, Zero }

    /// <summary>A chunk's data (pooled) and what to write for it, neighbours of one kind merged.</summary>
    private sealed class Piece : IDisposable
    {
        public Piece(Chunk chunk) => Chunk = chunk;

        public Chunk Chunk { get; }
        public ChunkBuffer? Data { get; set; }
        public List<(Op Op, int At, int Length)> Ops { get; } = new();

        public void Add(Op op, int at, int length)
        {
            if (Ops.Count > 0 && Ops[^1].Op == op && Ops[^1].At + Ops[^1].Length == at)
                Ops[^1] = (op, Ops[^1].At, Ops[^1].Length + length);
            else
                Ops.Add((op, at, length));
        }

        public void Dispose() => Data?.Dispose();
    }
}
