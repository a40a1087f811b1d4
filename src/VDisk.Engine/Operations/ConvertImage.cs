// Converting images (DESIGN.md "Operations": Convert; qemu-img convert). A pipeline: a planner walks
// the source's block status and hands out only ranges that may hold data; workers read, detect zero
// runs, compare against the new backing image (-B) and compress; one writer applies the results in
// guest order. Output goes to a temporary file renamed into place on success (OutputFile), or in place into a
// block device (BlockDeviceOutput).
using System.Buffers;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>Converts an image (with its backing chain) to another format or layout.</summary>
public static class ConvertImage
{
    private const int ChunkBytes = 1 << 20;

    /// <summary>
    /// Converts <paramref name="source"/> into a new image at <paramref name="destination"/>, or writes it as raw into
    /// the existing block device <paramref name="destination"/> names (see <see cref="BlockDeviceOutput"/>).
    /// </summary>
    public static ConvertResult Run(string source, string destination, ConvertOptions options,
        IProgress<OperationProgress>? progress = null, CancellationToken cancel = default)
    {
        source = Path.GetFullPath(source);
        destination = Path.GetFullPath(destination);
        options = Normalise(options, destination);
        bool toBlockDevice = OutputFile.DestinationKind(destination, blockDeviceAllowed: true) == HostFileType.BlockDevice;
        using var warnings = OperationWarnings.Collect();

        using var input = ImageChain.Open(source, new OpenOptions
        {
            Format = options.SourceFormat, Snapshot = options.Snapshot, CacheMode = options.SourceCacheMode, BackingCacheMode = options.SourceCacheMode,
        });
        ConvertResult Copy(VirtualDisk output, ConvertOptions copyOptions)
        {
            var copier = new Copier(input, output, copyOptions, progress, cancel);
            copier.Run();
            output.Flush();
            return new ConvertResult { Destination = destination, VirtualSize = input.Length, BytesWritten = copier.BytesWritten, CompressedUnits = copier.CompressedUnits };
        }
        if (toBlockDevice)
        {
            RefuseOverwritingInputs(new[] { destination }, destination, input, options.BackingPath);
            return BlockDeviceOutput.Write(input, destination, options, Copy);
        }

        var plan = CreateImage.Plan(destination, new CreateOptions
        {
            Format = options.DestinationFormat,
            Subformat = options.Subformat,
            Size = input.Length,
            ClusterSize = options.ClusterSize ?? 65536,
            Preallocation = options.Preallocation,
            Compat = options.Compat,
            CompressionType = options.CompressionType,
            BackingPath = options.BackingPath,
            BackingPathRelative = options.BackingPathRelative,
            BackingFormat = options.BackingFormat,
        }, options.Overwrite);
        RefuseOverwritingInputs(CreateImage.FilesOf(plan), destination, input, options.BackingPath);

        try
        {
            using var file = OutputFile.Begin(plan, options.Overwrite);
            CreateImage.Write(plan, file.Temp, cancel);
            ConvertResult result;
            using (var output = ImageChain.Open(file.Temp, new OpenOptions { Writable = true, Format = options.DestinationFormat, CacheMode = options.CacheMode }))
                result = Copy(output, options);
            file.Commit();
            return result with { Warnings = warnings.Messages };
        }
        catch (Exception e) when (CreateImage.WrapHostError(e, destination) is var wrapped && wrapped != e)
        {
            throw wrapped;
        }
    }

    private static ConvertOptions Normalise(ConvertOptions o, string destination)
    {
        if (o.SparseThreshold < 0 || (o.SparseThreshold != 0 && o.SparseThreshold % 512 != 0))
            throw VDiskException.Invalid(destination, $"Sparse threshold {o.SparseThreshold} is invalid: use 0 or a multiple of 512 bytes.");
        if (o.ThrottleLimit < 1)
            throw VDiskException.Invalid(destination, $"Throttle limit {o.ThrottleLimit} is invalid: use 1 or more workers.");
        bool streamOptimized = o.DestinationFormat == ImageFormat.Vmdk && o.Subformat == ImageSubformat.StreamOptimized;
        if (o.Compress && o.DestinationFormat == ImageFormat.Vmdk && o.Subformat == ImageSubformat.Default)
            return o with { Subformat = ImageSubformat.StreamOptimized };
        if (o.Compress && o.DestinationFormat != ImageFormat.Qcow2 && !streamOptimized)
            throw VDiskException.Invalid(destination, $"Compression is supported for qcow2 and streamOptimized vmdk output, not {FormatProbe.Name(o.DestinationFormat)}.");
        return streamOptimized ? o with { Compress = true } : o;
    }

    // No file the output writes (a VMDK writes its extents under their final names) may be a file the
    // conversion reads: the source chain, or the image the output will be an overlay of. Files are compared by
    // identity (device and inode), so a symbolic or hard link to an input counts as that input.
    private static void RefuseOverwritingInputs(IEnumerable<string> outputs, string destination, VirtualDisk input, string? backingPath)
    {
        if (HostFileInfo.SameFile(destination, input.Path))
            throw new VDiskException(VDiskErrorKind.DestinationIsSource, input.Path, destination == input.Path
                ? $"{input.Path}: the destination is the source image itself."
                : $"{destination} is a link to the source image {input.Path}; converting onto it would replace the source.");
        var inputs = new List<string>();
        for (var layer = input; layer != null; layer = layer.Backing)
            foreach (var file in layer.Driver.Files) inputs.Add(Path.GetFullPath(file.Name));
        if (backingPath != null) inputs.Add(Path.GetFullPath(backingPath));
        var identities = inputs.Select(HostFileInfo.Of).Where(f => f.HasIdentity).Select(f => (f.Device, f.Inode)).ToHashSet();
        var comparer = OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;
        foreach (var file in outputs)
        {
            var output = HostFileInfo.Of(file);
            if (inputs.Contains(file, comparer) || (output.HasIdentity && identities.Contains((output.Device, output.Inode))))
                throw VDiskException.Invalid(destination, $"{destination}: the output would overwrite '{file}', which the conversion reads.");
        }
    }

    /// <summary>One conversion's pipeline state.</summary>
    private sealed class Copier
    {
        private readonly VirtualDisk _input, _output;
        private readonly VirtualDisk? _base;
        private readonly ConvertOptions _options;
        private readonly IProgress<OperationProgress>? _progress;
        private readonly CancellationToken _cancel;
        private readonly ICompressedClusterWriter? _compressor;
        private readonly int _unit;
        private readonly TaskScheduler _workers;

        public Copier(VirtualDisk input, VirtualDisk output, ConvertOptions options, IProgress<OperationProgress>? progress, CancellationToken cancel)
        {
            _input = input;
            _output = output;
            _base = output.Backing;
            _options = options;
            _progress = progress;
            _cancel = cancel;
            if (options.Compress)
                _compressor = output.Driver as ICompressedClusterWriter
                    ?? throw VDiskException.Invalid(output.Path, $"{FormatProbe.Name(output.Format)} output cannot store compressed data.");
            // Zero detection works on whole destination clusters (raw: on the sparse threshold itself).
            long granularity = output.Format == ImageFormat.Raw ? Math.Max(512, options.SparseThreshold) : output.Driver.ClusterSize;
            if (_compressor != null) granularity = _compressor.CompressionUnit;
            _unit = (int)Math.Min(granularity, ChunkBytes);
            _workers = new ConcurrentExclusiveSchedulerPair(TaskScheduler.Default, options.ThrottleLimit).ConcurrentScheduler;
        }

        public long BytesWritten { get; private set; }
        public long CompressedUnits { get; private set; }
        private int ChunkSize => Math.Max(ChunkBytes / _unit, 1) * _unit;

        public void Run()
        {
            long total = _input.Length;
            var inFlight = new Queue<Task<ChunkResult>>();
            int maxInFlight = _options.ThrottleLimit * 2 + 1;
            try
            {
                foreach (var (offset, length) in PlanChunks())
                {
                    _cancel.ThrowIfCancellationRequested();
                    while (inFlight.Count >= maxInFlight) Apply(inFlight.Dequeue());
                    inFlight.Enqueue(Task.Factory.StartNew(() => Process(offset, length), _cancel, TaskCreationOptions.None, _workers));
                }
                while (inFlight.Count > 0) Apply(inFlight.Dequeue());
            }
            finally
            {
                foreach (var pending in inFlight)
                {
                    try { pending.Wait(); } catch (AggregateException) { }
                    if (pending.IsCompletedSuccessfully) pending.Result.Release();
                }
            }
            _progress?.Report(new OperationProgress(total, total));
        }

        // Ranges worth reading, in order, unit-aligned and at most one chunk long: everything the source or
        // (with -B) the new backing image may hold data in.
        private IEnumerable<(long Offset, long Length)> PlanChunks()
        {
            long size = _input.Length, unit = _unit, emittedEnd = 0;
            for (long pos = 0; pos < size;)
            {
                _cancel.ThrowIfCancellationRequested();
                var status = _input.GetBlockStatus(pos, size - pos);
                long end = pos + status.Length;
                bool mayHoldData = status.Kind == ExtentKind.Data || _options.SparseThreshold == 0 || BaseMayHoldData(pos, end);
                if (mayHoldData)
                {
                    long start = Math.Max(emittedEnd, pos / unit * unit);
                    long stop = Math.Min(size, (end + unit - 1) / unit * unit);
                    for (long at = start; at < stop; at += ChunkSize)
                        yield return (at, Math.Min(ChunkSize, stop - at));
                    emittedEnd = Math.Max(emittedEnd, stop);
                }
                else
                {
                    _progress?.Report(new OperationProgress(end, size));
                }
                pos = end;
            }
        }

        private bool BaseMayHoldData(long start, long end)
        {
            if (_base is null || start >= _base.Length) return false;
            end = Math.Min(end, _base.Length);
            for (long pos = start; pos < end;)
            {
                var s = _base.GetBlockStatus(pos, end - pos);
                if (s.Kind == ExtentKind.Data) return true;
                pos += s.Length;
            }
            return false;
        }

        // Runs on a worker: read, zero-detect, compare, compress. Progress is reported by the writer only,
        // so IProgress callbacks always arrive on the calling thread.
        private ChunkResult Process(long offset, long length)
        {
            var result = new ChunkResult(offset, (int)length);
            _input.Read(offset, result.Data);
            byte[]? baseData = null;
            if (_base != null)
            {
                baseData = ArrayPool<byte>.Shared.Rent((int)length);
                ReadBase(offset, baseData.AsSpan(0, (int)length));
            }
            try
            {
                Classify(result, baseData);
            }
            finally
            {
                if (baseData != null) ArrayPool<byte>.Shared.Return(baseData);
            }
            return result;
        }

        private void ReadBase(long offset, Span<byte> buffer)
        {
            buffer.Clear();
            if (offset >= _base!.Length) return;
            _base.Read(offset, buffer[..(int)Math.Min(buffer.Length, _base.Length - offset)]);
        }

        // Splits a chunk into units: unchanged (skip), zero (skip, or write zeroes over a backing image),
        // data, or compressed payloads.
        private void Classify(ChunkResult chunk, byte[]? baseData)
        {
            var data = chunk.Data;
            for (int at = 0; at < data.Length; at += _unit)
            {
                int n = Math.Min(_unit, data.Length - at);
                var unit = data.Slice(at, n);
                bool zero = _options.SparseThreshold != 0 && unit.IndexOfAnyExcept((byte)0) < 0;
                if (baseData != null && unit.SequenceEqual(baseData.AsSpan(at, n))) continue;
                if (zero)
                {
                    if (baseData != null) chunk.Add(new UnitOp(UnitKind.Zero, at, n));
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

        private void Apply(Task<ChunkResult> task)
        {
            var chunk = task.GetAwaiter().GetResult();
            try
            {
                foreach (var op in chunk.MergedOps())
                {
                    _cancel.ThrowIfCancellationRequested();
                    long guest = chunk.Offset + op.At;
                    switch (op.Kind)
                    {
                        case UnitKind.Data:
                            _output.Write(guest, chunk.Data.Slice(op.At, op.Length));
                            BytesWritten += op.Length;
                            break;
                        case UnitKind.Zero:
                            _output.WriteZeroes(guest, op.Length);
                            break;
                        case UnitKind.Compressed:
                            _compressor!.WriteCompressed(guest, op.Payload.AsSpan(0, op.PayloadLength));
                            BytesWritten += op.Length;
                            CompressedUnits++;
                            break;
                    }
                }
                _progress?.Report(new OperationProgress(chunk.Offset + chunk.Data.Length, _input.Length));
            }
            finally
            {
                chunk.Release();
            }
        }
    }

    private enum UnitKind { Data, Zero, Compressed }

    private readonly record struct UnitOp(UnitKind Kind, int At, int Length, byte[]? Payload = null, int PayloadLength = 0);

    /// <summary>A chunk read from the source and what to write for it; buffers come from the shared pool.</summary>
    private sealed class ChunkResult
    {
        private readonly byte[] _buffer;
        private readonly List<UnitOp> _ops = new();

        public ChunkResult(long offset, int length)
        {
            Offset = offset;
            _buffer = ArrayPool<byte>.Shared.Rent(length);
            Length = length;
        }

        public long Offset { get; }
        public int Length { get; }
        public Span<byte> Data => _buffer.AsSpan(0, Length);

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

        public void Release()
        {
            foreach (var op in _ops)
                if (op.Payload != null) ArrayPool<byte>.Shared.Return(op.Payload);
            _ops.Clear();
            ArrayPool<byte>.Shared.Return(_buffer);
        }
    }
}
