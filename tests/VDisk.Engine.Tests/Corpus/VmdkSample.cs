// A small, valid monolithicSparse VMDK built byte by byte (VMware Virtual Disk Format 1.1, "Hosted Sparse
// Extents": SparseExtentHeader, embedded descriptor, grain directory, grain table, grains), with a fixed
// layout the corpus damages: sector 0 header, 1-20 descriptor, 21 grain directory, 22-25 grain table,
// grains from sector 128 (the overhead). Guest grains: 0 and 1 data, 2 a zeroed grain, the rest unallocated.
using System.Text;

namespace VDisk.Engine.Tests.Corpus;

/// <summary>Builds the corpus's base VMDK images and descriptors.</summary>
internal static class VmdkSample
{
    public const int Sector = 512, GrainSectors = 128, CapacitySectors = 2048, DescriptorSector = 1, DescriptorSectors = 20,
        GdSector = 21, GtSector = 22, Overhead = 128;
    public const uint Flags = 0x1 | 0x4; // newline test, zeroed-grain entries
    // Header field offsets (SparseExtentHeader, little-endian, packed).
    public const int VersionField = 4, FlagsField = 8, CapacityField = 12, GrainSizeField = 20, DescriptorOffsetField = 28,
        DescriptorSizeField = 36, NumGtesField = 44, RgdOffsetField = 48, GdOffsetField = 56, OverheadField = 64, CheckBytesField = 73,
        CompressAlgorithmField = 77;

    /// <summary>The monolithicSparse image whose embedded descriptor names <paramref name="fileName"/>.</summary>
    public static byte[] Sparse(string fileName = "image.vmdk", string? parent = null)
    {
        var image = new byte[(Overhead + 2 * GrainSectors) * Sector];
        Bytes.Le32(image, 0, 0x564d444b);
        Bytes.Le32(image, VersionField, 1);
        Bytes.Le32(image, FlagsField, Flags);
        Bytes.Le64(image, CapacityField, CapacitySectors);
        Bytes.Le64(image, GrainSizeField, GrainSectors);
        Bytes.Le64(image, DescriptorOffsetField, DescriptorSector);
        Bytes.Le64(image, DescriptorSizeField, DescriptorSectors);
        Bytes.Le32(image, NumGtesField, 512);
        Bytes.Le64(image, GdOffsetField, GdSector);
        Bytes.Le64(image, OverheadField, Overhead);
        "\n \r\n"u8.CopyTo(image.AsSpan(CheckBytesField));
        Encoding.ASCII.GetBytes(Descriptor("monolithicSparse", $"RW {CapacitySectors} SPARSE \"{fileName}\"", parent)).CopyTo(image, DescriptorSector * Sector);
        Bytes.Le32(image, GdSector * Sector, GtSector);
        Bytes.Le32(image, GtSector * Sector, Overhead);
        Bytes.Le32(image, GtSector * Sector + 4, Overhead + GrainSectors);
        Bytes.Le32(image, GtSector * Sector + 8, 1); // zeroed grain
        Array.Fill(image, (byte)0x5a, Overhead * Sector, GrainSectors * Sector);
        for (int i = 0; i < GrainSectors * Sector; i++) image[(Overhead + GrainSectors) * Sector + i] = (byte)(i % 251);
        return image;
    }

    /// <summary>A descriptor file (or embedded descriptor) with one or more extent lines.</summary>
    public static string Descriptor(string createType, string extents, string? parent = null, string cid = "12345678")
    {
        var sb = new StringBuilder();
        sb.Append("# Disk DescriptorFile\nversion=1\n");
        sb.Append($"CID={cid}\nparentCID={(parent is null ? "ffffffff" : "87654321")}\n");
        sb.Append($"createType=\"{createType}\"\n");
        if (parent != null) sb.Append($"parentFileNameHint=\"{parent}\"\n");
        sb.Append("\n# Extent description\n").Append(extents).Append('\n');
        sb.Append("\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.adapterType = \"ide\"\n");
        return sb.ToString();
    }

    /// <summary>A monolithicFlat descriptor naming <paramref name="extent"/> for the whole disk.</summary>
    public static string Flat(string extent, long sectors = CapacitySectors, string? parent = null, long offset = 0)
        => Descriptor("monolithicFlat", $"RW {sectors} FLAT \"{extent}\" {offset}", parent);

    /// <summary>Flat extent content: 1 MiB with a recognisable pattern.</summary>
    public static byte[] FlatData()
    {
        var data = new byte[CapacitySectors * Sector];
        for (int i = 0; i < data.Length; i += Sector) data[i] = (byte)(i / Sector);
        return data;
    }
}
