// Writing stream-optimized extents (VMware Virtual Disk Format 1.1, "Stream-Optimized Compressed Sparse
// Extents"): grains are appended once, in increasing guest order, each as a grain marker and a zlib stream
// padded to a sector; each finished grain table follows its grains behind a grain table marker; the file
// ends with a grain directory marker and directory, a footer marker and footer (the header with the real
// gdOffset), and an end-of-stream marker. The header keeps gdOffset = GD_AT_END.
//
// Plain guest writes work too: the grain being written is held uncompressed in memory (and mapped there,
// so several writes may fill it) and compressed when a later grain is started. Flush and Dispose write the
// tail after the last grain - including the held grain and the unfinished grain table - without consuming
// it, so every flushed file is complete and writing can continue where it left off.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>The append-only writer of one stream-optimized extent. Callers hold the extent's lock or use the public methods, which take it.</summary>
internal sealed class VmdkStreamWriter
{
    private const int Sector = VmdkSparseHeader.SectorSize;
    private readonly VmdkSparseExtent _extent;
    private readonly VmdkGrainTables _tables;
    private readonly IStorage _storage;
    private readonly int _grainBytes;
    private readonly MemoryStorage _held;
    private long _heldGrain = -1;
    private long _allocatedGrain = -1;
    private long _lastGrain = -1;
    private uint[]? _table;
    private long _tableIndex = -1;
    private long _dataEnd;
    private bool _dirty;

    public VmdkStreamWriter(VmdkSparseExtent extent, VmdkGrainTables tables)
    {
        _extent = extent;
        _tables = tables;
        _storage = extent.Storage;
        _grainBytes = extent.Header.GrainBytes;
        _held = new MemoryStorage($"{_storage.Name} (grain being written)", new byte[_grainBytes]);
        _dataEnd = extent.Header.Overhead * Sector;
    }

    /// <summary>Writes the tail of an empty stream-optimized extent (directory, footer, end-of-stream) after its overhead.</summary>
    public static void WriteEmptyTail(IStorage storage, VmdkSparseHeader header)
    {
        long start = header.Overhead * Sector;
        var tail = new MemoryStream();
        AppendDirectoryAndFooter(tail, start, new uint[header.GdEntries], header);
        storage.WriteAt(start, tail.GetBuffer().AsSpan(0, (int)tail.Length));
        storage.SetLength(start + tail.Length);
    }

    /// <summary>The mapping of the grain held in memory, when <paramref name="grain"/> is that grain.</summary>
    public Mapping? MapPending(long grain, long inGrain, long reach)
        => grain == _heldGrain ? new Mapping(ExtentKind.Data, Math.Min(_grainBytes - inGrain, reach), _held, inGrain, Writable: true) : null;

    /// <summary>True when <paramref name="grain"/> is held in memory.</summary>
    public bool IsPending(long grain) => grain == _heldGrain;

    /// <summary>The grain table still being filled, when it is the one at <paramref name="gtIndex"/>.</summary>
    public uint[]? CurrentTable(long gtIndex) => gtIndex == _tableIndex ? _table : null;

    /// <summary>Starts writing <paramref name="grain"/>: compresses the previously held grain and returns memory for the new one.</summary>
    public HostRun Allocate(long grain)
    {
        lock (_extent.SyncRoot)
        {
            CheckOrder(grain);
            EmitHeld();
            _held.WriteZeroes(0, _grainBytes);
            _allocatedGrain = grain;
            return new HostRun(_held, 0, _grainBytes);
        }
    }

    /// <summary>Makes the grain from <see cref="Allocate"/> the held grain, visible to reads and further writes.</summary>
    public void Link(long grain)
    {
        lock (_extent.SyncRoot)
        {
            if (grain != _allocatedGrain) throw new InvalidOperationException($"grain {grain} was not allocated");
            _heldGrain = grain;
            _allocatedGrain = -1;
            _dirty = true;
        }
    }

    /// <summary>Appends an already compressed grain; an empty payload marks an all-zero grain, which is skipped.</summary>
    public void WriteCompressed(long grain, ReadOnlySpan<byte> payload)
    {
        lock (_extent.SyncRoot)
        {
            CheckOrder(grain);
            if (grain == _heldGrain) throw OrderError(grain);
            EmitHeld();
            if (payload.IsEmpty) _lastGrain = grain;
            else Append(grain, payload);
        }
    }

    /// <summary>Writes the tail (held grain, unfinished table, directory, footer, end-of-stream) after the last grain.</summary>
    public void WriteTail()
    {
        lock (_extent.SyncRoot)
        {
            if (!_dirty) return;
            var gd = _tables.Directory.ToArray();
            var tail = new MemoryStream();
            long pos = _dataEnd;
            var table = (uint[]?)_table?.Clone();
            long tableIndex = _tableIndex;
            if (HeldPayload() is { } payload)
            {
                long gtIndex = _heldGrain / VmdkSparseHeader.GtEntries;
                if (gtIndex != tableIndex)
                {
                    pos = AppendTable(tail, pos, table, tableIndex, gd);
                    (table, tableIndex) = (new uint[VmdkSparseHeader.GtEntries], gtIndex);
                }
                table![_heldGrain % VmdkSparseHeader.GtEntries] = SectorOf(pos);
                pos = AppendGrainRecord(tail, pos, _heldGrain, payload);
                CheckRoom(pos + VmdkSparseHeader.GtSectors * Sector);
            }
            pos = AppendTable(tail, pos, table, tableIndex, gd);
            AppendDirectoryAndFooter(tail, pos, gd, _extent.Header);
            _storage.WriteAt(_dataEnd, tail.GetBuffer().AsSpan(0, (int)tail.Length));
            _storage.SetLength(_dataEnd + tail.Length);
            _dirty = false;
        }
    }

    private void CheckOrder(long grain)
    {
        if (grain <= _lastGrain || (_heldGrain >= 0 && grain < _heldGrain)) throw OrderError(grain);
    }

    private VDiskException OrderError(long grain) => VDiskException.Unsupported(_storage.Name,
        $"streamOptimized images are written once, in increasing guest order: guest offset 0x{_extent.GuestStart + grain * _grainBytes:x} " +
        "lies in a grain that was already written. Use a sparse subformat for random writes.");

    // Compresses the held grain into the stream (all-zero grains are simply left unallocated).
    private void EmitHeld()
    {
        if (_heldGrain < 0) return;
        if (HeldPayload() is { } payload) Append(_heldGrain, payload);
        _lastGrain = _heldGrain;
        _heldGrain = -1;
    }

    private byte[]? HeldPayload()
    {
        if (_heldGrain < 0) return null;
        int valid = (int)Math.Min(_grainBytes, _extent.Length - _heldGrain * _grainBytes);
        var data = new byte[valid];
        _held.ReadAt(0, data);
        if (!data.AsSpan().ContainsAnyExcept((byte)0)) return null;
        var output = new byte[2 * _grainBytes + 1024];
        int length = VmdkGrainCompression.Compress(data, output);
        return output[..length];
    }

    private void Append(long grain, ReadOnlySpan<byte> payload)
    {
        long gtIndex = grain / VmdkSparseHeader.GtEntries;
        if (gtIndex != _tableIndex)
        {
            var record = new MemoryStream();
            var gd = new uint[1];
            long end = AppendTable(record, _dataEnd, _table, 0, gd);
            if (end != _dataEnd)
            {
                _storage.WriteAt(_dataEnd, record.GetBuffer().AsSpan(0, (int)record.Length));
                _tables.AddWritten(_tableIndex, gd[0], _table!);
                _dataEnd = end;
            }
            (_table, _tableIndex) = (new uint[VmdkSparseHeader.GtEntries], gtIndex);
        }
        var grainRecord = new MemoryStream();
        long next = AppendGrainRecord(grainRecord, _dataEnd, grain, payload);
        CheckRoom(next + VmdkSparseHeader.GtSectors * Sector);
        _storage.WriteAt(_dataEnd, grainRecord.GetBuffer().AsSpan(0, (int)grainRecord.Length));
        _table![grain % VmdkSparseHeader.GtEntries] = SectorOf(_dataEnd);
        _dataEnd = next;
        _lastGrain = grain;
        _dirty = true;
    }

    // A grain marker and its compressed data, padded to whole sectors. Returns the position after it.
    private long AppendGrainRecord(MemoryStream output, long pos, long grain, ReadOnlySpan<byte> payload)
    {
        var record = new byte[AlignUp(VmdkMarkers.GrainHeaderBytes + payload.Length)];
        VmdkMarkers.WriteGrainHeader(record, grain * _extent.Header.GrainSize, payload.Length);
        payload.CopyTo(record.AsSpan(VmdkMarkers.GrainHeaderBytes));
        output.Write(record);
        return pos + record.Length;
    }

    // A grain table marker and the table, unless the table is missing or empty; records it in gd[gdIndex].
    private static long AppendTable(MemoryStream output, long pos, uint[]? table, long gdIndex, uint[] gd)
    {
        if (table is null || !table.AsSpan().ContainsAnyExcept(0u)) return pos;
        var record = new byte[Sector + VmdkSparseHeader.GtSectors * Sector];
        VmdkMarkers.WriteMetadata(record, VmdkSparseHeader.GtSectors, VmdkMarkers.GrainTable);
        PutEntries(record.AsSpan(Sector), table);
        output.Write(record);
        gd[gdIndex] = SectorOf(pos + Sector);
        return pos + record.Length;
    }

    // Grain directory marker and directory, footer marker and footer, end-of-stream marker.
    private static void AppendDirectoryAndFooter(MemoryStream output, long pos, uint[] gd, VmdkSparseHeader header)
    {
        long gdSectors = header.GdSectors;
        var record = new byte[(1 + gdSectors + 3) * Sector];
        var span = record.AsSpan();
        VmdkMarkers.WriteMetadata(span, gdSectors, VmdkMarkers.GrainDirectory);
        PutEntries(span[Sector..], gd);
        var footerMarker = span[(int)((1 + gdSectors) * Sector)..];
        VmdkMarkers.WriteMetadata(footerMarker, 1, VmdkMarkers.Footer);
        var footer = header.Clone();
        footer.GdOffset = SectorOf(pos + Sector);
        footer.WriteTo(footerMarker[Sector..]);
        VmdkMarkers.WriteMetadata(footerMarker[(2 * Sector)..], 0, VmdkMarkers.EndOfStream);
        output.Write(record);
    }

    private static void PutEntries(Span<byte> destination, uint[] entries)
    {
        for (int i = 0; i < entries.Length; i++)
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(destination[(i * 4)..], entries[i]);
    }

    // Callers check the position against the limit first (CheckRoom).
    private static uint SectorOf(long offset) => checked((uint)(offset / Sector));

    // Grain table entries are 32-bit sector numbers: the file must end before 2 TiB, tail included.
    private void CheckRoom(long end)
    {
        if ((end + _extent.Header.GdSectors * Sector + 8 * Sector) / Sector > uint.MaxValue)
            throw VDiskException.Unsupported(_storage.Name, "the stream-optimized extent reached the 2 TiB limit of 32-bit grain table entries.");
    }

    private static long AlignUp(long value) => (value + Sector - 1) / Sector * Sector;
}
