// The copy under a backup (issue 11 "Change detection"), on the block pipeline. A planner names the 64 KiB blocks
// to look at: every block the source holds data in (full backup, hash path), or only those a dirty bitmap marks, and
// the blocks that read as zeroes now but held data at the previous point. Workers read and hash each block and
// compress it; a block whose hash equals the previous point's is skipped. The writer stores changed blocks in
// guest order in the new point's image (compressed where that saves space, zero clusters where a block became
// zeroes) and records each one's hash, which becomes the point's block hash file.
using System.Buffers;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.Engine.Backup;

/// <summary>Counters of a backup in progress.</summary>
/// <param name="BytesDone">Guest bytes of the source gone through.</param>
/// <param name="BytesTotal">The source's virtual size.</param>
/// <param name="BytesRead">Guest bytes read from the source.</param>
/// <param name="BytesChanged">Guest bytes found changed (whole blocks).</param>
/// <param name="BytesWritten">Bytes written into the point's image (compressed size where compressed).</param>
public readonly record struct BackupProgress(long BytesDone, long BytesTotal, long BytesRead, long BytesChanged, long BytesWritten);

/// <summary>One backup's copy from the source into a new point's image.</summary>
internal sealed class BackupCopier
{
    private const int Block = BlockHash.BlockSize;
    private readonly VirtualDisk _source, _output;
    private readonly BlockHashTable _previous;
    private readonly ICompressedClusterWriter? _compressor;
    private readonly int _workers;
    private readonly IProgress<BackupProgress>? _progress;
    private readonly CancellationToken _cancel;
    private readonly byte[]? _hashKey;
    private long _read, _changed, _written;

    /// <param name="source">The guest view backed up.</param>
    /// <param name="output">The new point's image (64 KiB clusters), backed by the previous point, or standalone.</param>
    /// <param name="previous">The previous point's block hashes (empty for a full backup).</param>
    /// <param name="compress">Store blocks compressed where that saves space.</param>
    /// <param name="workers">Reader and hasher threads.</param>
    /// <param name="progress">Counters, reported by the writer.</param>
    /// <param name="cancel">Stops the copy between chunks.</param>
    /// <param name="hashKey">The HMAC key of an encrypted set's block hashes; null for plain SHA-256.</param>
    public BackupCopier(VirtualDisk source, VirtualDisk output, BlockHashTable previous, bool compress, int workers,
        IProgress<BackupProgress>? progress, CancellationToken cancel, byte[]? hashKey = null)
    {
        _hashKey = hashKey;
        if (output.Driver.ClusterSize != Block) throw new ArgumentException("A backup point's image has 64 KiB clusters.", nameof(output));
        _source = source;
        _output = output;
        _previous = previous;
        _compressor = compress ? output.Driver as ICompressedClusterWriter : null;
        _workers = Math.Max(1, workers);
        _progress = progress;
        _cancel = cancel;
    }

    /// <summary>The hash of every block the new point's image decides, in block order.</summary>
    public List<BlockHashEntry> Entries { get; } = new();

    /// <summary>Guest bytes read from the source.</summary>
    public long BytesRead => _read;
    /// <summary>Guest bytes in changed blocks.</summary>
    public long BytesChanged => _changed;
    /// <summary>Bytes stored in the image for changed blocks (compressed size where compressed).</summary>
    public long BytesWritten => _written;

    /// <summary>Backs up the guest ranges in <paramref name="regions"/> (ascending; widened to whole blocks).</summary>
    public void Run(IEnumerable<(long Offset, long Length)> regions)
    {
        BlockPipeline.Run(Plan(regions), Process, Apply, piece => piece.Dispose(), _workers, _cancel);
        Report(_source.Length);
    }

    private void Report(long done) => _progress?.Report(new BackupProgress(done, _source.Length, _read, _changed, _written));

    // Within each region: read where the source holds data (whole blocks, chunks on a 1 MiB grid), and zero the
    // blocks between those runs that held data at the previous point.
    private IEnumerable<(Chunk Chunk, bool Read)> Plan(IEnumerable<(long Offset, long Length)> regions)
    {
        long size = _source.Length, grid = BlockPipeline.ChunkBytes;
        foreach (var (offset, length) in MergedBlocks(regions, size))
        {
            long pos = offset, end = offset + length;
            foreach (var (runStart, runLength) in MergedBlocks(BlockPipeline.DataRuns(_source, offset, end, _cancel), end))
            {
                foreach (var zero in ZeroBlocks(pos, runStart)) yield return (zero, false);
                for (long at = runStart, runEnd = runStart + runLength; at < runEnd;)
                {
                    long next = Math.Min(runEnd, (at / grid + 1) * grid);
                    yield return (new Chunk(at, (int)(next - at)), true);
                    at = next;
                }
                pos = runStart + runLength;
            }
            foreach (var zero in ZeroBlocks(pos, end)) yield return (zero, false);
        }
    }

    // Ranges widened to whole blocks (not past `size`), sorted input assumed, overlaps and neighbours merged.
    private static IEnumerable<(long Offset, long Length)> MergedBlocks(IEnumerable<(long Offset, long Length)> ranges, long size)
    {
        long start = -1, end = -1;
        foreach (var (offset, length) in ranges)
        {
            long s = offset / Block * Block, e = Math.Min(size, (offset + length + Block - 1) / Block * Block);
            if (e <= s) continue;
            if (start >= 0 && s <= end) { end = Math.Max(end, e); continue; }
            if (start >= 0) yield return (start, end - start);
            (start, end) = (Math.Max(s, end), e);
        }
        if (start >= 0 && end > start) yield return (start, end - start);
    }

    private IEnumerable<Chunk> ZeroBlocks(long from, long to)
    {
        if (to <= from) yield break;
        foreach (long block in _previous.NonZeroBlocks(from / Block, (to + Block - 1) / Block))
            yield return new Chunk(block * Block, (int)Math.Min(Block, _source.Length - block * Block));
    }

    // On a worker: read, hash, compare, compress.
    private Piece Process((Chunk Chunk, bool Read) work)
    {
        var piece = new Piece(work.Chunk);
        if (!work.Read)
        {
            piece.Ops.Add(new BlockOp(Kind.Zero, 0, work.Chunk.Length, BlockHash.Zero));
            return piece;
        }
        piece.Data = new ChunkBuffer(work.Chunk);
        var data = piece.Data.Span[..work.Chunk.Length];
        _source.Read(work.Chunk.Offset, data);
        piece.BytesRead = data.Length;
        for (int at = 0; at < data.Length; at += Block)
        {
            var block = data.Slice(at, Math.Min(Block, data.Length - at));
            var hash = BlockHash.Of(block, _hashKey);
            if (hash == _previous[(work.Chunk.Offset + at) / Block]) continue;
            if (hash == BlockHash.Zero)
            {
                piece.Ops.Add(new BlockOp(Kind.Zero, at, block.Length, hash));
                continue;
            }
            if (_compressor != null && block.Length == Block)
            {
                var payload = ArrayPool<byte>.Shared.Rent(Block * 2);
                if (_compressor.TryCompress(block, payload, out int length))
                {
                    piece.Ops.Add(new BlockOp(Kind.Compressed, at, block.Length, hash, payload, length));
                    continue;
                }
                ArrayPool<byte>.Shared.Return(payload);
            }
            piece.Ops.Add(new BlockOp(Kind.Data, at, block.Length, hash));
        }
        return piece;
    }

    // On the calling thread, in guest order.
    private bool Apply(Piece piece)
    {
        _read += piece.BytesRead;
        foreach (var op in piece.Ops)
        {
            _cancel.ThrowIfCancellationRequested();
            long guest = piece.Chunk.Offset + op.At;
            switch (op.Kind)
            {
                case Kind.Zero:
                    _output.WriteZeroes(guest, op.Length);
                    break;
                case Kind.Data:
                    _output.Write(guest, piece.Data!.Span.Slice(op.At, op.Length));
                    _written += op.Length;
                    break;
                case Kind.Compressed:
                    _output.WriteCompressed(guest, op.Payload.AsSpan(0, op.PayloadLength));
                    _written += op.PayloadLength;
                    break;
            }
            _changed += op.Length;
            Entries.Add(new BlockHashEntry(guest / Block, op.Hash));
        }
        Report(piece.Chunk.Offset + piece.Chunk.Length);
        return true;
    }

    private enum Kind { Data, Zero, Compressed }

    private readonly record struct BlockOp(Kind Kind, int At, int Length, BlockHash Hash, byte[]? Payload = null, int PayloadLength = 0);

    private sealed class Piece : IDisposable
    {
        public Piece(Chunk chunk) => Chunk = chunk;

        public Chunk Chunk { get; }
        public ChunkBuffer? Data { get; set; }
        public long BytesRead { get; set; }
        public List<BlockOp> Ops { get; } = new();

        public void Dispose()
        {
            foreach (var op in Ops)
                if (op.Payload != null) ArrayPool<byte>.Shared.Return(op.Payload);
            Data?.Dispose();
        }
    }
}
