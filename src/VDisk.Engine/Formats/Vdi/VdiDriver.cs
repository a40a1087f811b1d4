// The VDI driver (VirtualBox VDICore.h; QEMU block/vdi.c): opening with header and block-map validation,
// mapping answers, block allocation at the end of the data area, zeroing, and metadata write-back in a
// safe order (blocks_allocated, barrier, then the block map entries that point at the new blocks).
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Vdi;

/// <summary>A VDI 1.1 image, dynamic or static, with 1 MiB blocks. Thread-safe: metadata access is serialised.</summary>
public sealed partial class VdiDriver : IImageDriver
{
    private readonly object _lock = new();
    private VdiHeader _header;
    private VdiBlockMap _map;
    private readonly bool _writable;
    private bool _headerDirty;
    private bool _disposed;

    private VdiDriver(IStorage storage, VdiHeader header, VdiBlockMap map, bool writable)
    {
        Storage = storage;
        _header = header;
        _map = map;
        _writable = writable;
    }

    /// <inheritdoc/>
    public ImageFormat Format => ImageFormat.Vdi;
    /// <inheritdoc/>
    public IStorage Storage { get; }
    /// <inheritdoc/>
    public long VirtualSize => _header.DiskSize;
    /// <inheritdoc/>
    public int ClusterSize => VdiHeader.BlockSize;
    /// <inheritdoc/>
    public BackingReference? Backing => null;

    /// <summary>True for a static (fixed, preallocated) image; false for a dynamic one.</summary>
    public bool IsStatic => _header.ImageType == VdiImageType.Static;

    /// <summary>The image UUID (uuid_image / uuidCreate).</summary>
    public Guid ImageUuid => _header.ImageUuid;

    /// <inheritdoc/>
    public FormatDetails Details => new()
    {
        Compat = "1.1",
        ClusterSize = VdiHeader.BlockSize,
        Subformat = IsStatic ? "static" : "dynamic",
    };

    /// <summary>Opens a VDI image; the driver takes ownership of <paramref name="storage"/>.</summary>
    public static VdiDriver Open(IStorage storage, bool writable)
    {
        string path = storage.Name;
        long fileLength = storage.Length;
        var sector = new byte[VdiHeader.SectorSize];
        storage.ReadAt(0, sector);
        var header = VdiHeader.Parse(sector, fileLength, path);
        var mapBytes = new byte[header.BlockMapLength]; // bounded by the file length, checked in Parse
        storage.ReadAt(header.BlockMapOffset, mapBytes);
        var map = VdiBlockMap.Parse(mapBytes, header, path);
        return new VdiDriver(storage, header, map, writable);
    }

    /// <inheritdoc/>
    public Mapping Map(long guestOffset, long maxLength)
    {
        long length = Math.Min(maxLength, VirtualSize - guestOffset);
        long block = guestOffset / VdiHeader.BlockSize;
        long inBlock = guestOffset % VdiHeader.BlockSize;
        lock (_lock)
        {
            uint entry = _map[block];
            var kind = KindOf(entry);
            // Extend the run over following blocks of the same kind (data blocks only while contiguous in the file).
            long covered = VdiHeader.BlockSize - inBlock;
            for (long next = block + 1; covered < length; next++, covered += VdiHeader.BlockSize)
            {
                uint nextEntry = _map[next];
                bool same = kind == ExtentKind.Data ? nextEntry == entry + (next - block) : KindOf(nextEntry) == kind;
                if (!same) break;
            }
            long runLength = Math.Min(covered, length);
            return kind == ExtentKind.Data
                ? new Mapping(ExtentKind.Data, runLength, Storage, _header.BlockHostOffset(entry) + inBlock, Writable: true)
                : new Mapping(kind, runLength);
        }
    }

    /// <inheritdoc/>
    public void ReadCompressed(long guestOffset, Span<byte> destination)
        => throw new InvalidOperationException("VDI images have no compressed blocks.");

    /// <summary>
    /// Reserves data blocks for the guest blocks from <paramref name="guestOffset"/>: always the blocks just past
    /// the allocated ones, so reservations do not stack; each must be linked before the next is made
    /// (<see cref="VirtualDisk"/> holds its write lock across the pair).
    /// </summary>
    public HostRun Allocate(long guestOffset, long length)
    {
        CheckWritable();
        lock (_lock)
        {
            long firstBlock = guestOffset / VdiHeader.BlockSize;
            long blocks = Math.Max(1, (length + VdiHeader.BlockSize - 1) / VdiHeader.BlockSize);
            blocks = Math.Min(blocks, _map.Count - firstBlock);
            return new HostRun(Storage, _header.BlockHostOffset(_header.BlocksAllocated), blocks * VdiHeader.BlockSize);
        }
    }

    /// <inheritdoc/>
    public void Link(long guestOffset, HostRun run)
    {
        CheckWritable();
        lock (_lock)
        {
            uint firstIndex = _header.BlocksAllocated;
            if (run.Offset != _header.BlockHostOffset(firstIndex) || run.Length % VdiHeader.BlockSize != 0)
                throw new InvalidOperationException($"{Storage.Name}: VDI link of a run that is not the latest reservation (host offset {run.Offset}).");
            long firstBlock = guestOffset / VdiHeader.BlockSize;
            long count = run.Length / VdiHeader.BlockSize;
            for (long i = 0; i < count; i++)
            {
                if (VdiBlockMap.IsAllocated(_map[firstBlock + i]))
                    throw new InvalidOperationException($"{Storage.Name}: VDI guest block {firstBlock + i} is already allocated.");
            }
            for (long i = 0; i < count; i++) _map.Set(firstBlock + i, firstIndex + (uint)i);
            _header.BlocksAllocated = firstIndex + (uint)count;
            _headerDirty = true;
        }
    }

    /// <summary>
    /// Never-written blocks become VDI_DISCARDED (zero, nothing allocated). Data blocks stay allocated (a VDI
    /// block cannot be freed without moving another into its place) and are zeroed in the file: with
    /// <paramref name="unmap"/> by punching a hole, so the host releases the space.
    /// </summary>
    public long ZeroClusters(long guestOffset, long length, bool unmap)
    {
        CheckWritable();
        lock (_lock)
        {
            long first = guestOffset / VdiHeader.BlockSize;
            long end = Math.Min(_map.Count, first + (length + VdiHeader.BlockSize - 1) / VdiHeader.BlockSize);
            for (long block = first; block < end; block++)
            {
                uint entry = _map[block];
                if (!VdiBlockMap.IsAllocated(entry))
                {
                    _map.Set(block, VdiBlockMap.Discarded);
                    continue;
                }
                long host = _header.BlockHostOffset(entry);
                if (unmap) Storage.Discard(host, VdiHeader.BlockSize);
                else Storage.WriteZeroes(host, VdiHeader.BlockSize);
            }
            return length;
        }
    }

    /// <inheritdoc/>
    public void Flush()
    {
        lock (_lock)
        {
            WriteMetadata();
            Storage.Flush();
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            if (_writable) Flush();
        }
        finally
        {
            Storage.Dispose();
        }
    }

    private static ExtentKind KindOf(uint entry) => entry switch
    {
        VdiBlockMap.Unallocated => ExtentKind.Unallocated,
        VdiBlockMap.Discarded => ExtentKind.Zero,
        _ => ExtentKind.Data,
    };

    // blocks_allocated reaches the disk before any entry that points at the blocks it counts: a crash in
    // between leaves an unreferenced block (a leak), never two guest blocks sharing one data block.
    private void WriteMetadata()
    {
        if (_headerDirty)
        {
            Span<byte> field = stackalloc byte[4];
            VdiHeader.PutU32(field, 0, _header.BlocksAllocated);
            Storage.WriteAt(VdiHeader.BlocksAllocatedOffset, field);
            _headerDirty = false;
            if (_map.HasDirty) Storage.Flush();
        }
        _map.WriteBack(Storage, _header.BlockMapOffset);
    }

    private void CheckWritable()
    {
        if (!_writable) throw new VDiskException(VDiskErrorKind.ReadOnly, Storage.Name, $"{Storage.Name} is open read-only.");
    }
}
