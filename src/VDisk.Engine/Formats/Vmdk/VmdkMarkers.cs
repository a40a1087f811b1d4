// Stream-optimized markers (VMware Virtual Disk Format 1.1, "Stream-Optimized Compressed Sparse Extents";
// QEMU block/vmdk.c VmdkGrainMarker): a grain marker is the grain's LBA (u64) and compressed size (u32)
// followed directly by the data; a metadata marker is one sector: a sector count (u64), size 0, a type (u32).
using System.Buffers.Binary;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>Reads and writes the markers of a stream-optimized extent.</summary>
internal static class VmdkMarkers
{
    /// <summary>Bytes of a grain marker before the compressed data.</summary>
    public const int GrainHeaderBytes = 12;
    /// <summary>Metadata marker types.</summary>
    public const uint EndOfStream = 0, GrainTable = 1, GrainDirectory = 2, Footer = 3;
    private const int ValueOffset = 0, SizeOffset = 8, TypeOffset = 12;

    /// <summary>Fills a 512-byte sector with a metadata marker announcing <paramref name="numSectors"/> sectors of <paramref name="type"/>.</summary>
    public static void WriteMetadata(Span<byte> sector, long numSectors, uint type)
    {
        sector[..VmdkSparseHeader.SectorSize].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(sector[ValueOffset..], (ulong)numSectors);
        BinaryPrimitives.WriteUInt32LittleEndian(sector[TypeOffset..], type);
    }

    /// <summary>The fields of a metadata marker sector.</summary>
    public static (ulong Value, uint Size, uint Type) ReadMetadata(ReadOnlySpan<byte> sector) => (
        BinaryPrimitives.ReadUInt64LittleEndian(sector[ValueOffset..]),
        BinaryPrimitives.ReadUInt32LittleEndian(sector[SizeOffset..]),
        BinaryPrimitives.ReadUInt32LittleEndian(sector[TypeOffset..]));

    /// <summary>Writes a grain marker for the grain at sector <paramref name="lba"/> holding <paramref name="size"/> compressed bytes.</summary>
    public static void WriteGrainHeader(Span<byte> destination, long lba, int size)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination[ValueOffset..], (ulong)lba);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[SizeOffset..], (uint)size);
    }

    /// <summary>The LBA and compressed size of a grain marker.</summary>
    public static (ulong Lba, uint Size) ReadGrainHeader(ReadOnlySpan<byte> marker) => (
        BinaryPrimitives.ReadUInt64LittleEndian(marker[ValueOffset..]),
        BinaryPrimitives.ReadUInt32LittleEndian(marker[SizeOffset..]));
}
