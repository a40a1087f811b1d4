// Hosted sparse extents (VMware Virtual Disk Format 1.1, "Hosted Sparse Extents" and "Stream-Optimized
// Compressed Sparse Extents"; QEMU block/vmdk.c get_cluster_offset, vmdk_read_extent): guest grains
// mapped through the grain directory and grain tables. Entry 0 is unallocated, 1 is a zeroed grain when
// the header enables them, anything else the sector of the grain (of its marker when compressed).
// New grains are appended at the grain-aligned end of the file; writes of stream-optimized extents go
// through VmdkStreamWriter.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>A sparse extent ("KDMV"), plain or stream-optimized. Thread-safe.</summary>
internal sealed class VmdkSparseExtent : VmdkExtent
{
    private const uint ZeroedGrain = 1;
    private const int MaxRunGrains = 1024;
    private readonly object _lock = new();
    private readonly VmdkGrainTables _tables;
    private readonly bool _writable;
    private readonly int _grainBytes;
    private readonly long _grainSectors;
    private readonly ThreadLocal<(long Sector, byte[]? Data)> _lastInflated = new(() => (-1, null));
    private long _nextGrainSector;

    public VmdkSparseExtent(IStorage storage, long guestStart, VmdkSparseHeader header, bool writable, int cacheCapacity)
        : base(storage, guestStart, header.Capacity * VmdkSparseHeader.SectorSize)
    {
        Header = header;
        _writable = writable;
        _grainBytes = header.GrainBytes;
        _grainSectors = header.GrainSize;
        _tables = new VmdkGrainTables(storage, header, cacheCapacity);
        long fileSectors = (storage.Length + VmdkSparseHeader.SectorSize - 1) / VmdkSparseHeader.SectorSize;
        _nextGrainSector = (Math.Max(fileSectors, header.Overhead) + _grainSectors - 1) / _grainSectors * _grainSectors;
        if (writable && header.IsCompressed) Stream = new VmdkStreamWriter(this, _tables);
    }

    /// <summary>The grain directories and tables.</summary>
    internal VmdkGrainTables Tables => _tables;

    /// <summary>The header in force (the footer's, for a stream-optimized extent with its directory at the end).</summary>
    public VmdkSparseHeader Header { get; }

    /// <summary>The writer of a stream-optimized extent opened for writing; null otherwise.</summary>
    public VmdkStreamWriter? Stream { get; }

    /// <summary>The lock guarding the tables (shared with the stream writer).</summary>
    internal object SyncRoot => _lock;

    /// <summary>True when the grain directory names any grain table, that is when grains were ever written.</summary>
    public bool HasGrains
    {
        get
        {
            lock (_lock) return _tables.Directory.Any(e => e != 0);
        }
    }

    /// <inheritdoc/>
    public override Mapping Map(long offset, long maxLength)
    {
        long grain = offset / _grainBytes;
        long gtIndex = grain / VmdkSparseHeader.GtEntries;
        int slot = (int)(grain % VmdkSparseHeader.GtEntries);
        long tableEnd = (gtIndex + 1) * VmdkSparseHeader.GtEntries * _grainBytes;
        long reach = Math.Min(maxLength, Math.Min(Length, tableEnd) - offset);
        long inGrain = offset % _grainBytes;
        lock (_lock)
        {
            if (Stream?.MapPending(grain, inGrain, reach) is { } pending) return pending;
            var table = Stream?.CurrentTable(gtIndex) ?? _tables.Get(gtIndex);
            if (table is null) return new Mapping(ExtentKind.Unallocated, reach);
            uint first = table[slot];
            long length = _grainBytes - inGrain;
            var kind = Classify(first);
            if (kind == ExtentKind.Compressed) return new Mapping(ExtentKind.Compressed, Math.Min(length, reach));
            if (kind == ExtentKind.Data)
            {
                for (int i = slot + 1; length < reach && i < table.Length && table[i] == first + (i - slot) * _grainSectors; i++)
                    length += _grainBytes;
                long host = CheckGrainSector(first, grain) * VmdkSparseHeader.SectorSize + inGrain;
                return new Mapping(ExtentKind.Data, Math.Min(length, reach), Storage, host, Writable: _writable);
            }
            for (int i = slot + 1; length < reach && i < table.Length && Classify(table[i]) == kind; i++)
                length += _grainBytes;
            return new Mapping(kind, Math.Min(length, reach));
        }
    }

    /// <inheritdoc/>
    public override void ReadCompressed(long offset, Span<byte> destination)
    {
        long grain = offset / _grainBytes;
        uint sector;
        lock (_lock)
        {
            var table = Stream?.CurrentTable(grain / VmdkSparseHeader.GtEntries) ?? _tables.Get(grain / VmdkSparseHeader.GtEntries);
            sector = table![(int)(grain % VmdkSparseHeader.GtEntries)];
        }
        var cached = _lastInflated.Value;
        if (cached.Sector != sector || cached.Data is null)
        {
            var data = cached.Data ?? new byte[_grainBytes];
            int length = Inflate(CheckGrainSector(sector, grain), grain, data);
            data.AsSpan(length).Clear(); // a short last grain reads as zero past its end
            _lastInflated.Value = cached = (sector, data);
        }
        cached.Data.AsSpan((int)(offset % _grainBytes), destination.Length).CopyTo(destination);
    }

    /// <inheritdoc/>
    public override HostRun Allocate(long offset, long length)
    {
        if (Stream != null) return Stream.Allocate(offset / _grainBytes);
        lock (_lock)
        {
            long grains = Math.Clamp((Math.Min(length, Length - offset) + _grainBytes - 1) / _grainBytes, 1, MaxRunGrains);
            long sector = ReserveSectors(grains * _grainSectors);
            return new HostRun(Storage, sector * VmdkSparseHeader.SectorSize, grains * _grainBytes);
        }
    }

    /// <inheritdoc/>
    public override void Link(long offset, HostRun run)
    {
        long firstGrain = offset / _grainBytes;
        if (Stream != null)
        {
            Stream.Link(firstGrain);
            return;
        }
        lock (_lock)
        {
            long sector = run.Offset / VmdkSparseHeader.SectorSize;
            for (long i = 0; i < run.Length / _grainBytes; i++)
                SetEntry(firstGrain + i, (uint)(sector + i * _grainSectors));
        }
    }

    /// <inheritdoc/>
    public override long ZeroClusters(long offset, long length, bool unmap, bool hasBacking)
    {
        long end = Math.Min(offset + length, Length);
        long done = 0;
        lock (_lock)
        {
            for (long pos = offset; pos < end; pos += _grainBytes, done += _grainBytes)
            {
                long grain = pos / _grainBytes;
                if (Stream?.IsPending(grain) == true) break;
                var table = Stream?.CurrentTable(grain / VmdkSparseHeader.GtEntries) ?? _tables.Get(grain / VmdkSparseHeader.GtEntries);
                uint entry = table?[(int)(grain % VmdkSparseHeader.GtEntries)] ?? 0;
                if (entry == 0 && !hasBacking) continue; // already reads as zero
                if (!Header.HasZeroGrain || Stream != null) break;
                if (entry != ZeroedGrain) SetEntry(grain, ZeroedGrain); // the old grain, if any, is leaked as QEMU does
            }
        }
        return Math.Min(done, length);
    }

    /// <inheritdoc/>
    public override void Dispose() => _lastInflated.Dispose();

    /// <inheritdoc/>
    public override void Flush()
    {
        lock (_lock)
        {
            if (Stream != null) Stream.WriteTail();
            else _tables.WriteBack();
        }
        Storage.Flush();
    }

    private ExtentKind Classify(uint entry) => entry switch
    {
        0 => ExtentKind.Unallocated,
        ZeroedGrain when Header.HasZeroGrain => ExtentKind.Zero,
        _ => Header.IsCompressed ? ExtentKind.Compressed : ExtentKind.Data,
    };

    private void SetEntry(long grain, uint value)
        => _tables.Set(grain / VmdkSparseHeader.GtEntries, (int)(grain % VmdkSparseHeader.GtEntries), value, () => ReserveSectors(_grainSectors));

    // Grain-aligned space at the end of the file; grain table entries are 32-bit sector numbers.
    private long ReserveSectors(long sectors)
    {
        long sector = _nextGrainSector;
        if (sector + sectors > VmdkSparseHeader.MaxExtentFileSectors)
            throw VDiskException.Unsupported(Storage.Name, "the extent file reached the 2 TiB limit of 32-bit grain table entries.");
        _nextGrainSector += sectors;
        return sector;
    }

    // A grain may not point into the metadata before the first grain.
    private long CheckGrainSector(uint sector, long grain)
    {
        if (sector < Header.Overhead)
            throw VDiskException.Corrupt(Storage.Name, $"the grain table entry for guest offset 0x{GuestStart + grain * _grainBytes:x} points to sector {sector}, inside the metadata (grains start at sector {Header.Overhead}).");
        return sector;
    }

    // Reads a compressed grain (after its marker when the extent has markers) and inflates it.
    private int Inflate(long sector, long grain, byte[] destination)
    {
        long host = sector * VmdkSparseHeader.SectorSize;
        int maxCompressed = 2 * _grainBytes;
        byte[] compressed;
        int length;
        if (Header.HasMarkers)
        {
            Span<byte> marker = stackalloc byte[VmdkMarkers.GrainHeaderBytes];
            Storage.ReadAt(host, marker);
            var (lba, size) = VmdkMarkers.ReadGrainHeader(marker);
            ulong expected = (ulong)(grain * _grainSectors);
            if (lba != expected && lba != expected + (ulong)(GuestStart / VmdkSparseHeader.SectorSize))
                throw VDiskException.Corrupt(Storage.Name, $"the grain marker at host offset 0x{host:x} names LBA {lba}, but the grain table maps it to sector {expected}.");
            if (size == 0 || size > maxCompressed)
                throw VDiskException.Corrupt(Storage.Name, $"the grain marker at host offset 0x{host:x} has size {size}; it must be 1 to {maxCompressed} bytes.");
            length = (int)size;
            compressed = new byte[length];
            Storage.ReadAt(host + VmdkMarkers.GrainHeaderBytes, compressed);
        }
        else
        {
            length = maxCompressed; // the zlib stream ends by itself
            compressed = new byte[length];
            Storage.ReadAt(host, compressed);
        }
        return VmdkGrainCompression.Decompress(compressed, length, destination, Storage.Name, host);
    }
}
