// The copy at the heart of a conversion (qemu-img convert), on the block pipeline: the planner hands out only
// ranges the source (or, with -B, the new backing image) may hold data in; workers read, detect zero units,
// skip units equal to the new backing image, and compress whole units (a qcow2 cluster, whatever its size,
// or a VMDK grain); the writer applies them in guest order through the output's VirtualDisk, compressed
// units included, so every write passes the same range checks.
using System.Buffers;
using VDisk.Engine.Core;

namespace VDisk.Engine.Operations;

/// <summary>One conversion's copy from <c>input</c> to <c>output</c>.</summary>
internal sealed class ConvertCopier
{
    private readonly VirtualDisk _input, _output;
    private readonly VirtualDisk? _base;
    private readonly ConvertOptions _options;
    private readonly IProgress<OperationProgress>? _progress;
    private readonly CancellationToken _cancel;
    private readonly ICompressedClusterWriter? _compressor;
    private readonly int _unit;

    public ConvertCopier(VirtualDisk input, VirtualDisk output, ConvertOptions options, IProgress<OperationProgress>? progress, CancellationToken cancel)
    {
        _input = input;
        _output = output;
        _base = output.Backing;
        _options = options;
        _progress = progress;
        _cancel = cancel;
        if (options.Compress)
        {
            _compressor = output.Driver as ICompressedClusterWriter
                ?? throw VDiskException.Invalid(output.Path, $"{FormatProbe.Name(output.Format)} output cannot store compressed data.");
            _unit = _compressor.CompressionUnit; // always whole: a compressed unit is never split
        }
        else
        {
            // Zero detection works on whole destination clusters (raw: on the sparse threshold itself).
            long granularity = output.Format == ImageFormat.Raw ? Math.Max(512, options.SparseThreshold) : output.Driver.ClusterSize;
            _unit = (int)Math.Min(granularity, BlockPipeline.ChunkBytes);
        }
    }

    /// <summary>Guest bytes written as data (compressed or not).</summary>
    public long BytesWritten { get; private set; }
    /// <summary>Units stored compressed.</summary>
    public long CompressedUnits { get; private set; }

    public void Run()
    {
        var chunks = BlockPipeline.Chunks(RangesToCopy(), _unit, _input.Length);
        BlockPipeline.Run(chunks, Process, Apply, result => result.Dispose(), _options.ThrottleLimit, _cancel);
        _progress?.Report(new OperationProgress(_input.Length, _input.Length));
    }

    // Everything the source or (with -B) the new backing image may hold data in; skipped runs count as progress.
    private IEnumerable<(long Offset, long Length)> RangesToCopy()
    {
        long size = _input.Length;
        for (long pos = 0; pos < size;)
        {
            _cancel.ThrowIfCancellationRequested();
            var status = _input.GetBlockStatus(pos, size - pos);
            long end = pos + status.Length;
            if (status.Kind == ExtentKind.Data || _options.SparseThreshold == 0 || BaseMayHoldData(pos, end)) yield return (pos, end - pos);
            else _progress?.Report(new OperationProgress(end, size));
            pos = end;
        }
    }

    private bool BaseMayHoldData(long start, long end)
        => _base != null && start < _base.Length && BlockPipeline.DataRuns(_base, start, end, _cancel).Any();

    // On a worker: read, classify, compress. Progress is reported by the writer only, so IProgress callbacks
    // always arrive on the calling thread.
    private ConvertChunk Process(Chunk chunk)
    {
        var result = new ConvertChunk(chunk);
        _input.Read(chunk.Offset, result.Data.Span);
        _options.Verifier?.Observe(chunk.Offset, result.Data.Span);
        if (_base is null)
        {
            Classify(result, default);
            return result;
        }
        using var baseData = new ChunkBuffer(chunk);
        baseData.Span.Clear();
        if (chunk.Offset < _base.Length)
            _base.Read(chunk.Offset, baseData.Span[..(int)Math.Min(chunk.Length, _base.Length - chunk.Offset)]);
        Classify(result, baseData.Span);
        return result;
    }

    // Splits a chunk into units: unchanged (skip), zero (skip, or write zeroes over a backing image), data, or
    // compressed payloads.
    private void Classify(ConvertChunk chunk, ReadOnlySpan<byte> baseData)
    {
        var data = chunk.Data.Span;
        for (int at = 0; at < data.Length; at += _unit)
        {
            int n = Math.Min(_unit, data.Length - at);
            var unit = data.Slice(at, n);
            if (!baseData.IsEmpty && unit.SequenceEqual(baseData.Slice(at, n))) continue;
            if (_options.SparseThreshold != 0 && unit.IndexOfAnyExcept((byte)0) < 0)
            {
                if (!baseData.IsEmpty) chunk.Add(new UnitOp(UnitKind.Zero, at, n));
                continue;
            }
            if (_compressor != null && n == _unit)
            {
                var payload = ArrayPool<byte>.Shared.Rent(_unit * 2);
                if (_compressor.TryCompress(unit, payload, out int written))
                {
                    chunk.Add(new UnitOp(UnitKind.Compressed, at, n, payload, written));
                    continue;
                }
                ArrayPool<byte>.Shared.Return(payload);
            }
            chunk.Add(new UnitOp(UnitKind.Data, at, n));
        }
    }

    private bool Apply(ConvertChunk chunk)
    {
        foreach (var op in chunk.MergedOps())
        {
            _cancel.ThrowIfCancellationRequested();
            long guest = chunk.Chunk.Offset + op.At;
            switch (op.Kind)
            {
                case UnitKind.Data:
                    _output.Write(guest, chunk.Data.Span.Slice(op.At, op.Length));
                    BytesWritten += op.Length;
                    break;
                case UnitKind.Zero:
                    _output.WriteZeroes(guest, op.Length);
                    break;
                case UnitKind.Compressed:
                    _output.WriteCompressed(guest, op.Payload.AsSpan(0, op.PayloadLength));
                    BytesWritten += op.Length;
                    CompressedUnits++;
                    break;
            }
        }
        _progress?.Report(new OperationProgress(chunk.Chunk.Offset + chunk.Chunk.Length, _input.Length));
        return true;
    }

    private enum UnitKind { Data, Zero, Compressed }

    private readonly record struct UnitOp(UnitKind Kind, int At, int Length, byte[]? Payload = null, int PayloadLength = 0);

    /// <summary>A chunk read from the source and what to write for it; buffers are pooled.</summary>
    private sealed class ConvertChunk : IDisposable
    {
        private readonly List<UnitOp> _ops = new();

        public ConvertChunk(Chunk chunk)
        {
            Chunk = chunk;
            Data = new ChunkBuffer(chunk);
        }

        public Chunk Chunk { get; }
        public ChunkBuffer Data { get; }

        public void Add(UnitOp op) => _ops.Add(op);

        /// <summary>The operations with neighbouring data (or zero) units merged into one write.</summary>
        public IEnumerable<UnitOp> MergedOps()
        {
            UnitOp? pending = null;
            foreach (var op in _ops)
            {
                if (pending is { } p && p.Kind == op.Kind && op.Kind != UnitKind.Compressed && p.At + p.Length == op.At)
                {
                    pending = p with { Length = p.Length + op.Length };
                    continue;
                }
                if (pending is { } done) yield return done;
                pending = op;
            }
            if (pending is { } last) yield return last;
        }

        public void Dispose()
        {
            foreach (var op in _ops)
                if (op.Payload != null) ArrayPool<byte>.Shared.Return(op.Payload);
            _ops.Clear();
            Data.Dispose();
        }
    }
}
