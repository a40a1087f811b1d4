// The hosted sparse extent header (VMware Virtual Disk Format 1.1, "Hosted Sparse Extent Header";
// QEMU block/vmdk.c VMDK4Header): parse, validate every field against hard limits before anything is
// allocated, and serialise. The same record is the footer of a stream-optimized extent.
using System.Buffers.Binary;
using System.Numerics;
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>The 512-byte header (or footer) of a hosted sparse extent ("KDMV").</summary>
internal sealed class VmdkSparseHeader
{
    /// <summary>"KDMV" read as a little-endian 32-bit number.</summary>
    public const uint Magic = 0x564d444b;
    /// <summary>Bytes per sector: every offset in the header counts sectors.</summary>
    public const int SectorSize = 512;
    /// <summary>gdOffset of a stream-optimized header whose grain directory is found through the footer.</summary>
    public const ulong GdAtEnd = ulong.MaxValue;
    /// <summary>Grain table entries per grain table (the only value VMware and QEMU write).</summary>
    public const int GtEntries = 512;
    /// <summary>Sectors of one grain table (512 four-byte entries).</summary>
    public const int GtSectors = GtEntries * 4 / SectorSize;
    /// <summary>Smallest grain: 8 sectors (4 KiB), as the specification requires.</summary>
    public const long MinGrainSectors = 8;
    /// <summary>Largest grain QEMU accepts (0x200000 sectors, 1 GiB).</summary>
    public const long MaxGrainSectors = 0x200000;
    /// <summary>
    /// Largest compressed grain accepted (4096 sectors, 2 MiB): each is inflated into a buffer of its own size, and its
    /// marker may announce twice that. Stream-optimized images use 64 KiB grains.
    /// </summary>
    public const long MaxCompressedGrainSectors = 4096;
    /// <summary>Most grain directory entries QEMU accepts (its L1 limit).</summary>
    public const long MaxGdEntries = 32L << 20;
    /// <summary>Largest embedded descriptor accepted (1 MiB).</summary>
    public const long MaxDescriptorSectors = 2048;
    /// <summary>Grain offsets in grain tables are 32-bit sector numbers: extent files end before 2 TiB.</summary>
    public const long MaxExtentFileSectors = 1L << 32;

    // Flags (specification "flags" field; QEMU VMDK4_FLAG_*).
    public const uint FlagNewlineDetect = 1 << 0, FlagRedundantGd = 1 << 1, FlagZeroGrain = 1 << 2,
        FlagCompressed = 1 << 16, FlagMarkers = 1 << 17;
    /// <summary>compressAlgorithm value for deflate (zlib streams in practice).</summary>
    public const ushort CompressionDeflate = 1;

    // Byte offsets of the fields, magic included.
    private const int VersionOffset = 4, FlagsOffset = 8, CapacityOffset = 12, GrainSizeOffset = 20,
        DescriptorOffsetOffset = 28, DescriptorSizeOffset = 36, NumGtesOffset = 44, RgdOffsetOffset = 48,
        GdOffsetOffset = 56, OverheadOffset = 64, UncleanShutdownOffset = 72, NewlineCharsOffset = 73,
        CompressAlgorithmOffset = 77;
    private static readonly byte[] NewlineChars = { (byte)'\n', (byte)' ', (byte)'\r', (byte)'\n' };

    public uint Version { get; set; } = 1;
    public uint Flags { get; set; }
    /// <summary>Extent size in sectors.</summary>
    public long Capacity { get; set; }
    /// <summary>Grain size in sectors.</summary>
    public long GrainSize { get; set; } = 128;
    public long DescriptorOffset { get; set; }
    public long DescriptorSize { get; set; }
    public int NumGtesPerGt { get; set; } = GtEntries;
    public long RgdOffset { get; set; }
    /// <summary>Grain directory sector, or <see cref="GdAtEnd"/> (stored as -1).</summary>
    public long GdOffset { get; set; }
    /// <summary>Sectors of metadata before the first grain (QEMU's grain_offset).</summary>
    public long Overhead { get; set; }
    public bool UncleanShutdown { get; set; }
    public ushort CompressAlgorithm { get; set; }

    public bool GdIsAtEnd => GdOffset == -1;
    public bool IsCompressed => CompressAlgorithm == CompressionDeflate;
    public bool HasMarkers => (Flags & FlagMarkers) != 0;
    public bool HasZeroGrain => (Flags & FlagZeroGrain) != 0;
    public bool HasRedundantGd => (Flags & FlagRedundantGd) != 0;
    public int GrainBytes => (int)(GrainSize * SectorSize);
    /// <summary>Grain directory entries (grain tables) needed to cover <see cref="Capacity"/>.</summary>
    public long GdEntries => (Capacity + GrainSize * GtEntries - 1) / (GrainSize * GtEntries);
    /// <summary>Sectors one grain directory occupies.</summary>
    public long GdSectors => (GdEntries * 4 + SectorSize - 1) / SectorSize;

    /// <summary>Reads the fields of a header sector; <see cref="Validate"/> checks them.</summary>
    public static VmdkSparseHeader Parse(ReadOnlySpan<byte> sector, string path)
    {
        if (sector.Length < SectorSize)
            throw VDiskException.Corrupt(path, $"the sparse extent header is truncated ({sector.Length} of {SectorSize} bytes).");
        uint magic = BinaryPrimitives.ReadUInt32LittleEndian(sector);
        if (magic != Magic)
            throw VDiskException.Corrupt(path, $"sparse extent header field magicNumber is 0x{magic:x8}; expected 0x{Magic:x8} (\"KDMV\").");
        ulong gd = U64(sector, GdOffsetOffset);
        return new VmdkSparseHeader
        {
            Version = U32(sector, VersionOffset),
            Flags = U32(sector, FlagsOffset),
            Capacity = Sectors(sector, CapacityOffset, "capacity", path),
            GrainSize = Sectors(sector, GrainSizeOffset, "grainSize", path),
            DescriptorOffset = Sectors(sector, DescriptorOffsetOffset, "descriptorOffset", path),
            DescriptorSize = Sectors(sector, DescriptorSizeOffset, "descriptorSize", path),
            NumGtesPerGt = (int)Math.Min(U32(sector, NumGtesOffset), int.MaxValue),
            RgdOffset = Sectors(sector, RgdOffsetOffset, "rgdOffset", path),
            GdOffset = gd == GdAtEnd ? -1 : Sectors(sector, GdOffsetOffset, "gdOffset", path),
            Overhead = Sectors(sector, OverheadOffset, "overHead", path),
            UncleanShutdown = sector[UncleanShutdownOffset] != 0,
            CompressAlgorithm = BinaryPrimitives.ReadUInt16LittleEndian(sector[CompressAlgorithmOffset..]),
            NewlineCheckPassed = sector.Slice(NewlineCharsOffset, NewlineChars.Length).SequenceEqual(NewlineChars),
        };
    }

    private bool NewlineCheckPassed { get; init; } = true;

    /// <summary>
    /// Checks every field against hard limits and against the extent file's length, so nothing is sized from an
    /// unchecked value. <paramref name="isFooter"/> is true for the footer of a stream-optimized extent.
    /// </summary>
    public void Validate(string path, long fileLength, bool isFooter = false)
    {
        string what = isFooter ? "sparse extent footer" : "sparse extent header";
        long fileSectors = (fileLength + SectorSize - 1) / SectorSize;
        if (Version is < 1 or > 3)
            throw VDiskException.Unsupported(path, $"{what} field version is {Version}; only versions 1 to 3 are supported.");
        if ((Flags & FlagNewlineDetect) != 0 && !NewlineCheckPassed)
            throw VDiskException.Corrupt(path, $"{what} newline check bytes are damaged (the file was probably transferred in text mode).");
        if (CompressAlgorithm > CompressionDeflate)
            throw VDiskException.Unsupported(path, $"{what} field compressAlgorithm is {CompressAlgorithm}; only 0 (none) and 1 (deflate) are supported.");
        if (GrainSize < MinGrainSectors || GrainSize > MaxGrainSectors || !BitOperations.IsPow2(GrainSize))
            throw VDiskException.Corrupt(path, $"{what} field grainSize is {GrainSize} sectors; it must be a power of two from {MinGrainSectors} to {MaxGrainSectors}.");
        if (IsCompressed && GrainSize > MaxCompressedGrainSectors)
            throw VDiskException.Unsupported(path, $"{what} field grainSize is {GrainSize} sectors; compressed grains of more than {MaxCompressedGrainSectors} sectors (2 MiB) are not supported.");
        if (NumGtesPerGt != GtEntries)
            throw VDiskException.Unsupported(path, $"{what} field numGTEsPerGT is {NumGtesPerGt}; only {GtEntries} is supported.");
        if (Capacity > MaxGdEntries * GtEntries * GrainSize || Capacity > long.MaxValue / SectorSize / 2)
            throw VDiskException.Corrupt(path, $"{what} field capacity is {Capacity} sectors, beyond the largest extent a grain directory of {MaxGdEntries} entries can map.");
        if (DescriptorOffset != 0 && (DescriptorSize < 1 || DescriptorSize > MaxDescriptorSectors || DescriptorOffset + DescriptorSize > fileSectors))
            throw VDiskException.Corrupt(path, $"{what} fields descriptorOffset/descriptorSize are {DescriptorOffset}/{DescriptorSize}; the descriptor must be 1 to {MaxDescriptorSectors} sectors inside the file ({fileSectors} sectors).");
        if (Overhead > fileSectors)
            throw VDiskException.Corrupt(path, $"{what} field overHead is {Overhead} sectors but the file has only {fileSectors}: the file is truncated.");
        if (GdIsAtEnd)
        {
            if (isFooter || !IsCompressed)
                throw VDiskException.Corrupt(path, $"{what} field gdOffset is GD_AT_END, which only the header of a stream-optimized extent may use.");
            return;
        }
        CheckDirectory(GdOffset, "gdOffset", what, path, fileSectors);
        if (HasRedundantGd) CheckDirectory(RgdOffset, "rgdOffset", what, path, fileSectors);
    }

    private void CheckDirectory(long offset, string field, string what, string path, long fileSectors)
    {
        if (offset < 1 || offset + GdSectors > fileSectors)
            throw VDiskException.Corrupt(path, $"{what} field {field} is {offset}; a grain directory of {GdSectors} sectors there lies outside the file ({fileSectors} sectors).");
    }

    /// <summary>Serialises the header into a 512-byte sector.</summary>
    public void WriteTo(Span<byte> sector)
    {
        sector[..SectorSize].Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(sector, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(sector[VersionOffset..], Version);
        BinaryPrimitives.WriteUInt32LittleEndian(sector[FlagsOffset..], Flags);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[CapacityOffset..], (ulong)Capacity);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[GrainSizeOffset..], (ulong)GrainSize);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[DescriptorOffsetOffset..], (ulong)DescriptorOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[DescriptorSizeOffset..], (ulong)DescriptorSize);
        BinaryPrimitives.WriteUInt32LittleEndian(sector[NumGtesOffset..], (uint)NumGtesPerGt);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[RgdOffsetOffset..], (ulong)RgdOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[GdOffsetOffset..], GdIsAtEnd ? GdAtEnd : (ulong)GdOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[OverheadOffset..], (ulong)Overhead);
        sector[UncleanShutdownOffset] = UncleanShutdown ? (byte)1 : (byte)0;
        NewlineChars.CopyTo(sector[NewlineCharsOffset..]);
        BinaryPrimitives.WriteUInt16LittleEndian(sector[CompressAlgorithmOffset..], CompressAlgorithm);
    }

    /// <summary>A copy (used for the footer of a stream-optimized extent).</summary>
    public VmdkSparseHeader Clone() => (VmdkSparseHeader)MemberwiseClone();

    private static uint U32(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(s[offset..]);
    private static ulong U64(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(s[offset..]);

    // Sector counts and offsets must fit comfortably in a long once multiplied by the sector size.
    private static long Sectors(ReadOnlySpan<byte> s, int offset, string field, string path)
    {
        ulong value = U64(s, offset);
        if (value > long.MaxValue / SectorSize / 2)
            throw VDiskException.Corrupt(path, $"sparse extent header field {field} is {value}, beyond any possible file.");
        return (long)value;
    }
}
