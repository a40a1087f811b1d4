// The VDI pre-header and version 1.1 header (VirtualBox VDICore.h: VDIPREHEADER + VDIHEADER1 /
// VDIHEADER1PLUS; QEMU block/vdi.c: VdiHeader): parse, validate every field against hard limits before
// anything is allocated, and serialise the first 512-byte sector.
using System.Buffers.Binary;
using System.Text;
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Vdi;

/// <summary>VDI image types (VDIIMAGETYPE).</summary>
internal enum VdiImageType : uint
{
    /// <summary>Dynamically growing base image (VDI_IMAGE_TYPE_NORMAL).</summary>
    Dynamic = 1,
    /// <summary>Preallocated base image of fixed size (VDI_IMAGE_TYPE_FIXED).</summary>
    Static = 2,
    /// <summary>Undo image (VDI_IMAGE_TYPE_UNDO), not supported.</summary>
    Undo = 3,
    /// <summary>Differencing image (VDI_IMAGE_TYPE_DIFF), not supported.</summary>
    Differencing = 4,
}

/// <summary>A CHS geometry record (VDIDISKGEOMETRY); zero cylinders mean "not calculated".</summary>
internal readonly record struct VdiGeometry(uint Cylinders, uint Heads, uint Sectors, uint SectorSize);

/// <summary>The fields of a VDI 1.1 header, all little-endian in the file.</summary>
internal sealed class VdiHeader
{
    /// <summary>Every header lives in the first sector; the block map and data start on sector boundaries.</summary>
    public const int SectorSize = 512;
    /// <summary>VDI_SIGNATURE, at <see cref="SignatureOffset"/>.</summary>
    public const uint Signature = 0xbeda107f;
    /// <summary>VDI_VERSION_1_1: major 1 in the high half, minor 1 in the low half.</summary>
    public const uint Version11 = 0x00010001;
    /// <summary>sizeof(VDIHEADER1): the header_size QEMU writes and the smallest accepted.</summary>
    public const uint HeaderSizeV1 = 0x180;
    /// <summary>sizeof(VDIHEADER1PLUS): headers this large carry the LCHS geometry.</summary>
    public const uint HeaderSizeV1Plus = 0x190;
    /// <summary>The only block size QEMU (and so VDisk) supports: 1 MiB (DEFAULT_CLUSTER_SIZE).</summary>
    public const int BlockSize = 1 << 20;
    /// <summary>VDI_BLOCKS_IN_IMAGE_MAX: the block map, rounded to a sector, must stay below 2 GiB.</summary>
    public const uint MaxBlocksInImage = (int.MaxValue + 1u - SectorSize) / 4;
    /// <summary>VDI_DISK_SIZE_MAX.</summary>
    public const long MaxDiskSize = (long)MaxBlocksInImage * BlockSize;
    /// <summary>The pre-header text QEMU 7.2 writes (VirtualBox ignores the text; any is accepted on read).</summary>
    public const string QemuText = "<<< QEMU VM Virtual Disk Image >>>\n";
    /// <summary>VDI_IMAGE_FLAGS_ZERO_EXPAND, the only defined image flag.</summary>
    public const uint KnownFlags = 0x1;

    // Byte offsets in the first sector (pre-header: text, signature, version; then VDIHEADER1PLUS).
    internal const int TextOffset = 0x00, TextLength = 0x40, SignatureOffset = 0x40, VersionOffset = 0x44,
        HeaderSizeOffset = 0x48, ImageTypeOffset = 0x4c, ImageFlagsOffset = 0x50, DescriptionOffset = 0x54,
        DescriptionLength = 256, BlockMapOffsetOffset = 0x154, DataOffsetOffset = 0x158, LegacyGeometryOffset = 0x15c,
        Unused1Offset = 0x16c, DiskSizeOffset = 0x170, BlockSizeOffset = 0x178, BlockExtraOffset = 0x17c,
        BlocksInImageOffset = 0x180, BlocksAllocatedOffset = 0x184, ImageUuidOffset = 0x188, LastSnapUuidOffset = 0x198,
        LinkUuidOffset = 0x1a8, ParentUuidOffset = 0x1b8, LchsGeometryOffset = 0x1c8;
    /// <summary>The pre-header (text, signature, version) precedes the header_size bytes of the header proper.</summary>
    internal const int PreHeaderLength = 0x48;

    public string Text { get; init; } = QemuText;
    public uint HeaderSize { get; init; } = HeaderSizeV1;
    public VdiImageType ImageType { get; init; } = VdiImageType.Dynamic;
    public uint ImageFlags { get; init; }
    public byte[] Description { get; init; } = new byte[DescriptionLength];
    public uint BlockMapOffset { get; init; }
    public uint DataOffset { get; init; }
    public VdiGeometry LegacyGeometry { get; init; } = new(0, 0, 0, SectorSize);
    public uint Unused1 { get; init; }
    /// <summary>Guest size in bytes, rounded up to a whole sector as QEMU does on open.</summary>
    public long DiskSize { get; init; }
    public uint BlockExtra { get; init; }
    public uint BlocksInImage { get; init; }
    /// <summary>Data blocks present in the file; the next block is allocated at this index.</summary>
    public uint BlocksAllocated { get; set; }
    public Guid ImageUuid { get; init; }
    public Guid LastSnapUuid { get; init; }
    public Guid LinkUuid { get; init; }
    public Guid ParentUuid { get; init; }
    /// <summary>The LCHS geometry, present when <see cref="HeaderSize"/> is at least <see cref="HeaderSizeV1Plus"/>.</summary>
    public VdiGeometry? LchsGeometry { get; init; }

    /// <summary>Bytes of the block map proper (4 per block), without sector padding.</summary>
    public long BlockMapLength => BlocksInImage * 4L;

    /// <summary>Host offset of data block <paramref name="index"/> (its first byte).</summary>
    public long BlockHostOffset(uint index) => DataOffset + (long)index * BlockSize;

    /// <summary>True when <paramref name="sector"/> carries the VDI signature at offset 0x40.</summary>
    public static bool HasSignature(ReadOnlySpan<byte> sector)
        => sector.Length >= SignatureOffset + 4 && U32(sector, SignatureOffset) == Signature;

    /// <summary>
    /// Parses and validates the header in the first sector of a file of <paramref name="fileLength"/> bytes.
    /// Throws NotAnImage without the signature, Unsupported for valid images QEMU also refuses, Corrupt otherwise.
    /// </summary>
    public static VdiHeader Parse(ReadOnlySpan<byte> sector, long fileLength, string path)
    {
        if (!HasSignature(sector))
        {
            string found = sector.Length >= SignatureOffset + 4 ? $"0x{U32(sector, SignatureOffset):x8}" : "missing";
            throw new VDiskException(VDiskErrorKind.NotAnImage, path,
                $"{path}: not a VDI image (signature at offset 0x40 is {found}, expected 0x{Signature:x8}).");
        }
        if (fileLength < SectorSize || sector.Length < SectorSize)
            throw VDiskException.Corrupt(path, $"the VDI header is truncated: the file is {fileLength} bytes, the header sector needs {SectorSize}.");

        uint version = U32(sector, VersionOffset);
        if (version != Version11)
            throw VDiskException.Unsupported(path, $"VDI header field version is {version >> 16}.{version & 0xffff}; only version 1.1 is supported.");
        ulong diskSize = U64(sector, DiskSizeOffset);
        if (diskSize > MaxDiskSize)
            throw VDiskException.Unsupported(path, $"VDI header field disk_size is {diskSize}; at most {MaxDiskSize} bytes are supported.");
        uint headerSize = U32(sector, HeaderSizeOffset);
        var h = new VdiHeader
        {
            Text = ReadText(sector.Slice(TextOffset, TextLength)),
            HeaderSize = headerSize,
            ImageType = (VdiImageType)U32(sector, ImageTypeOffset),
            ImageFlags = U32(sector, ImageFlagsOffset),
            Description = sector.Slice(DescriptionOffset, DescriptionLength).ToArray(),
            BlockMapOffset = U32(sector, BlockMapOffsetOffset),
            DataOffset = U32(sector, DataOffsetOffset),
            LegacyGeometry = ReadGeometry(sector, LegacyGeometryOffset),
            Unused1 = U32(sector, Unused1Offset),
            DiskSize = (long)(diskSize + SectorSize - 1) / SectorSize * SectorSize, // QEMU rounds odd sizes up to a sector
            BlockExtra = U32(sector, BlockExtraOffset),
            BlocksInImage = U32(sector, BlocksInImageOffset),
            BlocksAllocated = U32(sector, BlocksAllocatedOffset),
            ImageUuid = new Guid(sector.Slice(ImageUuidOffset, 16)),
            LastSnapUuid = new Guid(sector.Slice(LastSnapUuidOffset, 16)),
            LinkUuid = new Guid(sector.Slice(LinkUuidOffset, 16)),
            ParentUuid = new Guid(sector.Slice(ParentUuidOffset, 16)),
            LchsGeometry = headerSize >= HeaderSizeV1Plus ? ReadGeometry(sector, LchsGeometryOffset) : null,
        };
        uint blockSize = U32(sector, BlockSizeOffset);
        if (blockSize != BlockSize)
            throw VDiskException.Unsupported(path, $"VDI header field block_size is {blockSize}; only {BlockSize}-byte (1 MiB) blocks are supported.");
        h.Validate(fileLength, path);
        return h;
    }

    /// <summary>Checks every field against the format's hard limits and the file length.</summary>
    public void Validate(long fileLength, string path)
    {
        if (HeaderSize < HeaderSizeV1)
            throw VDiskException.Corrupt(path, $"VDI header field header_size is {HeaderSize}; it must be at least {HeaderSizeV1}.");
        if (ImageType is VdiImageType.Undo or VdiImageType.Differencing)
            throw VDiskException.Unsupported(path, $"VDI header field image_type is {(uint)ImageType} ({ImageType.ToString().ToLowerInvariant()}); only dynamic (1) and static (2) images are supported.");
        if (ImageType is not (VdiImageType.Dynamic or VdiImageType.Static))
            throw VDiskException.Corrupt(path, $"VDI header field image_type is {(uint)ImageType}; it must be 1 (dynamic) or 2 (static).");
        if ((ImageFlags & ~KnownFlags) != 0)
            throw VDiskException.Unsupported(path, $"VDI header field image_flags is 0x{ImageFlags:x8}; only bit 0 (zero expand) is defined.");
        if (LinkUuid != Guid.Empty || ParentUuid != Guid.Empty)
            throw VDiskException.Unsupported(path, $"VDI header field {(LinkUuid != Guid.Empty ? "uuid_link" : "uuid_parent")} is set: differencing VDI images are not supported.");
        if (LegacyGeometry.SectorSize != SectorSize)
            throw VDiskException.Unsupported(path, $"VDI header field sector_size is {LegacyGeometry.SectorSize}; only {SectorSize}-byte sectors are supported.");
        if (LchsGeometry is { } lchs && lchs.SectorSize != SectorSize)
            throw VDiskException.Unsupported(path, $"VDI header field lchs_geometry.sector_size is {lchs.SectorSize}; only {SectorSize}-byte sectors are supported.");
        if (BlockExtra != 0)
            throw VDiskException.Unsupported(path, $"VDI header field block_extra is {BlockExtra}; per-block extra data is not supported.");
        if (BlocksInImage > MaxBlocksInImage)
            throw VDiskException.Unsupported(path, $"VDI header field blocks_in_image is {BlocksInImage}; at most {MaxBlocksInImage} are supported.");
        if (DiskSize > (long)BlocksInImage * BlockSize)
            throw VDiskException.Corrupt(path, $"VDI header field blocks_in_image is {BlocksInImage}, too few for disk_size {DiskSize} (needs {(DiskSize + BlockSize - 1) / BlockSize}).");
        if (BlocksAllocated > BlocksInImage)
            throw VDiskException.Corrupt(path, $"VDI header field blocks_allocated is {BlocksAllocated}, more than blocks_in_image ({BlocksInImage}).");
        if (BlockMapOffset % SectorSize != 0)
            throw VDiskException.Unsupported(path, $"VDI header field offset_bmap is 0x{BlockMapOffset:x}; only sector-aligned block maps are supported.");
        if (DataOffset % SectorSize != 0)
            throw VDiskException.Unsupported(path, $"VDI header field offset_data is 0x{DataOffset:x}; only sector-aligned data areas are supported.");
        if (BlockMapOffset < PreHeaderLength + (long)HeaderSize)
            throw VDiskException.Corrupt(path, $"VDI header field offset_bmap is 0x{BlockMapOffset:x}; the block map overlaps the {PreHeaderLength + HeaderSize}-byte header.");
        if (BlockMapOffset + BlockMapLength > fileLength)
            throw VDiskException.Corrupt(path, $"VDI header field offset_bmap is 0x{BlockMapOffset:x}: the {BlockMapLength}-byte block map ends past the end of the file ({fileLength} bytes).");
        if (DataOffset < BlockMapOffset + BlockMapLength)
            throw VDiskException.Corrupt(path, $"VDI header field offset_data is 0x{DataOffset:x}; the data area overlaps the block map (which ends at 0x{BlockMapOffset + BlockMapLength:x}).");
    }

    /// <summary>Serialises the header into the first sector (<paramref name="sector"/>: 512 bytes, zeroed by the caller).</summary>
    public void WriteTo(Span<byte> sector)
    {
        byte[] text = Encoding.Latin1.GetBytes(Text);
        text.AsSpan(0, Math.Min(text.Length, TextLength - 1)).CopyTo(sector[TextOffset..]);
        PutU32(sector, SignatureOffset, Signature);
        PutU32(sector, VersionOffset, Version11);
        PutU32(sector, HeaderSizeOffset, HeaderSize);
        PutU32(sector, ImageTypeOffset, (uint)ImageType);
        PutU32(sector, ImageFlagsOffset, ImageFlags);
        Description.AsSpan(0, Math.Min(Description.Length, DescriptionLength)).CopyTo(sector[DescriptionOffset..]);
        PutU32(sector, BlockMapOffsetOffset, BlockMapOffset);
        PutU32(sector, DataOffsetOffset, DataOffset);
        WriteGeometry(sector, LegacyGeometryOffset, LegacyGeometry);
        PutU32(sector, Unused1Offset, Unused1);
        BinaryPrimitives.WriteUInt64LittleEndian(sector[DiskSizeOffset..], (ulong)DiskSize);
        PutU32(sector, BlockSizeOffset, BlockSize);
        PutU32(sector, BlockExtraOffset, BlockExtra);
        PutU32(sector, BlocksInImageOffset, BlocksInImage);
        PutU32(sector, BlocksAllocatedOffset, BlocksAllocated);
        // IPRT stores UUIDs with the first three fields little-endian: the same layout as Guid.TryWriteBytes.
        ImageUuid.TryWriteBytes(sector[ImageUuidOffset..]);
        LastSnapUuid.TryWriteBytes(sector[LastSnapUuidOffset..]);
        LinkUuid.TryWriteBytes(sector[LinkUuidOffset..]);
        ParentUuid.TryWriteBytes(sector[ParentUuidOffset..]);
        if (LchsGeometry is { } lchs) WriteGeometry(sector, LchsGeometryOffset, lchs);
    }

    // The text is informational ("<<< Sun VirtualBox Disk Image >>>\n", innotek, Oracle, QEMU variants): up to its NUL.
    private static string ReadText(ReadOnlySpan<byte> field)
    {
        int end = field.IndexOf((byte)0);
        return Encoding.Latin1.GetString(end < 0 ? field : field[..end]);
    }

    private static VdiGeometry ReadGeometry(ReadOnlySpan<byte> s, int offset)
        => new(U32(s, offset), U32(s, offset + 4), U32(s, offset + 8), U32(s, offset + 12));

    private static void WriteGeometry(Span<byte> s, int offset, VdiGeometry g)
    {
        PutU32(s, offset, g.Cylinders);
        PutU32(s, offset + 4, g.Heads);
        PutU32(s, offset + 8, g.Sectors);
        PutU32(s, offset + 12, g.SectorSize);
    }

    internal static uint U32(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(s[offset..]);
    internal static ulong U64(ReadOnlySpan<byte> s, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(s[offset..]);
    internal static void PutU32(Span<byte> s, int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(s[offset..], value);
}
