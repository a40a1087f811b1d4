// Corpus: sparse VMDK extents (VMware Virtual Disk Format 1.1, "Hosted Sparse Extents", "Stream-Optimized
// Compressed Sparse Extents"): every SparseExtentHeader field at 0, its maximum, a misaligned and an
// overflowing value; grain directory and grain table entries past the end of the file or into the metadata;
// truncation at every structure; stream-optimized footers, markers and compressed grains; a VMware 3 (COWD) file.
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using static VDisk.Engine.Tests.Corpus.CorpusStage;
using static VDisk.Engine.Tests.Corpus.VmdkSample;

namespace VDisk.Engine.Tests.Corpus;

internal static class VmdkCases
{
    private const string QemuLenient = "QEMU does not check this sparse extent field (it reads zeroes where it points past the file); VDisk refuses inconsistent sparse extent metadata";
    private const string QemuReadsMetadata = "QEMU reads a grain table entry that points into the metadata as the grain's data; VDisk refuses it";

    public static void Write(CorpusWriter w)
    {
        var image = Sparse();
        void Case(string name, Action<byte[]> change, Outcome outcome, string? qemuDiffers = null) =>
            w.Add($"vmdk-sparse-{name}", "vmdk", "image.vmdk", Bytes.With(image, change), outcome, qemuDiffers: qemuDiffers);

        Case("valid", _ => { }, Outcome.Valid);
        Case("version-zero", b => Bytes.Le32(b, VersionField, 0), Outcome.Unsupported(Info, "version"), QemuLenient);
        Case("version-four", b => Bytes.Le32(b, VersionField, 4), Outcome.Unsupported(Info, "version"));
        Case("version-max", b => Bytes.Le32(b, VersionField, uint.MaxValue), Outcome.Unsupported(Info, "version"));
        Case("flags-unknown-bits", b => Bytes.Le32(b, FlagsField, Flags | 0xf0f0_0000), Outcome.Valid);
        Case("flags-zero", b => Bytes.Le32(b, FlagsField, 0), Outcome.Corrupt(Map, "inside the metadata"), QemuReadsMetadata);
        Case("capacity-zero", b => Bytes.Le64(b, CapacityField, 0), Outcome.Unsupported(Info, "capacity"));
        Case("capacity-max", b => Bytes.Le64(b, CapacityField, ulong.MaxValue), Outcome.Corrupt(Info, "capacity"));
        Case("capacity-misaligned", b => Bytes.Le64(b, CapacityField, CapacitySectors - 1), Outcome.Valid);
        Case("capacity-overflow", b => Bytes.Le64(b, CapacityField, 1UL << 32), Outcome.Corrupt(Info, "gdOffset"), QemuLenient);
        Case("grain-size-zero", b => Bytes.Le64(b, GrainSizeField, 0), Outcome.Corrupt(Info, "grainSize"));
        Case("grain-size-max", b => Bytes.Le64(b, GrainSizeField, ulong.MaxValue), Outcome.Corrupt(Info, "grainSize"));
        Case("grain-size-misaligned", b => Bytes.Le64(b, GrainSizeField, 100), Outcome.Corrupt(Info, "grainSize"), QemuLenient);
        Case("grain-size-overflow", b => Bytes.Le64(b, GrainSizeField, 0x400000), Outcome.Corrupt(Info, "grainSize"));
        Case("num-gtes-zero", b => Bytes.Le32(b, NumGtesField, 0), Outcome.Unsupported(Info, "numGTEsPerGT"));
        Case("num-gtes-max", b => Bytes.Le32(b, NumGtesField, uint.MaxValue), Outcome.Unsupported(Info, "numGTEsPerGT"));
        Case("num-gtes-511", b => Bytes.Le32(b, NumGtesField, 511), Outcome.Unsupported(Info, "numGTEsPerGT"),
            "QEMU accepts grain tables of fewer than 512 entries; VDisk supports only 512");
        Case("descriptor-offset-zero", b => Bytes.Le64(b, DescriptorOffsetField, 0), Outcome.Corrupt(Info, "descriptor"), "QEMU opens a sparse extent without an embedded descriptor on its own; VDisk asks for the split image's descriptor file");
        Case("descriptor-offset-past-eof", b => Bytes.Le64(b, DescriptorOffsetField, 1UL << 40), Outcome.Corrupt(Info, "descriptorOffset"), QemuLenient);
        Case("descriptor-size-zero", b => Bytes.Le64(b, DescriptorSizeField, 0), Outcome.Corrupt(Info, "descriptorSize"), QemuLenient);
        Case("descriptor-size-max", b => Bytes.Le64(b, DescriptorSizeField, ulong.MaxValue), Outcome.Corrupt(Info, "descriptorSize"), QemuLenient);
        Case("gd-offset-zero", b => Bytes.Le64(b, GdOffsetField, 0), Outcome.Corrupt(Info, "gdOffset"), QemuLenient);
        Case("gd-offset-past-eof", b => Bytes.Le64(b, GdOffsetField, 1UL << 40), Outcome.Corrupt(Info, "gdOffset"), QemuLenient);
        Case("gd-offset-at-end-uncompressed", b => Bytes.Le64(b, GdOffsetField, ulong.MaxValue), Outcome.Corrupt(Info, "gdOffset"));
        Case("gd-offset-into-descriptor", b => Bytes.Le64(b, GdOffsetField, DescriptorSector), Outcome.Corrupt(Info, "grain directory entry 0"), QemuLenient);
        Case("overhead-zero", b => Bytes.Le64(b, OverheadField, 0), Outcome.Valid);
        Case("overhead-past-eof", b => Bytes.Le64(b, OverheadField, 1UL << 40), Outcome.Corrupt(Info, "overHead"));
        Case("compress-algorithm-unknown", b => Bytes.Le32(b, CompressAlgorithmField, 2), Outcome.Unsupported(Info, "compressAlgorithm"), "QEMU reads an unknown compressAlgorithm as no compression; VDisk refuses it");
        Case("compress-algorithm-max", b => { b[CompressAlgorithmField] = 0xff; b[CompressAlgorithmField + 1] = 0xff; }, Outcome.Unsupported(Info, "compressAlgorithm"), "QEMU reads an unknown compressAlgorithm as no compression; VDisk refuses it");
        Case("check-bytes-damaged", b => b[CheckBytesField + 2] = (byte)'\n', Outcome.Corrupt(Info, "newline"), "QEMU ignores the newline check bytes; VDisk reports a file damaged by a text-mode transfer");
        Case("compressed-flag-on-plain-grains", b => { b[CompressAlgorithmField] = 1; Bytes.Le32(b, FlagsField, Flags | 0x10000); },
            Outcome.Corrupt(Read, "grain"));
        Case("gd-entry-past-eof", b => Bytes.Le32(b, GdSector * Sector, 1u << 30), Outcome.Corrupt(Info, "grain directory entry 0"), QemuLenient);
        Case("gd-entry-zero", b => Bytes.Le32(b, GdSector * Sector, 0), Outcome.Valid);
        Case("gd-entry-max", b => Bytes.Le32(b, GdSector * Sector, uint.MaxValue), Outcome.Corrupt(Info, "grain directory entry 0"), QemuLenient);
        Case("gd-entry-into-descriptor", b => Bytes.Le32(b, GdSector * Sector, DescriptorSector), Outcome.Valid);
        Case("gt-entry-past-eof", b => Bytes.Le32(b, GtSector * Sector, 1u << 30), Outcome.Valid);
        Case("gt-entry-max", b => Bytes.Le32(b, GtSector * Sector, uint.MaxValue), Outcome.Valid);
        Case("gt-entry-into-header", b => Bytes.Le32(b, GtSector * Sector, 2), Outcome.Corrupt(Map, "inside the metadata"), QemuReadsMetadata);
        Case("gt-entry-misaligned", b => Bytes.Le32(b, GtSector * Sector, Overhead + 1), Outcome.Valid);

        foreach (var (label, sectors, outcome) in new (string, long, Outcome)[]
        {
            ("magic", 0, Outcome.Corrupt(Info, "truncated")),
            ("header", 1, Outcome.Corrupt(Info, "descriptor")),
            ("descriptor", GdSector, Outcome.Corrupt(Info, "truncated")),
            ("grain-directory", GtSector, Outcome.Corrupt(Info, "truncated")),
            ("grain-table", Overhead, Outcome.Valid),
            ("in-grain", Overhead + 10, Outcome.Valid),
        })
            w.Add($"vmdk-sparse-truncated-{label}", "vmdk", "image.vmdk", Bytes.Truncate(image, sectors == 0 ? 4 : sectors * Sector), outcome);
        Stream(w);
        Cowd(w);
    }

    // A stream-optimized image written by VDisk's converter, damaged in its footer, markers and grains.
    private static void Stream(CorpusWriter w)
    {
        string scratch = Path.Combine(Path.GetTempPath(), $"vdisk-corpus-{Guid.NewGuid():N}");
        Directory.CreateDirectory(scratch);
        byte[] image;
        try
        {
            string raw = Path.Combine(scratch, "source.raw"), vmdk = Path.Combine(scratch, "stream.vmdk");
            File.WriteAllBytes(raw, VmdkSample.FlatData());
            ConvertImage.Run(raw, vmdk, new ConvertOptions { DestinationFormat = ImageFormat.Vmdk, Subformat = ImageSubformat.StreamOptimized });
            image = File.ReadAllBytes(vmdk);
        }
        finally
        {
            Directory.Delete(scratch, recursive: true);
        }
        int firstGrainMarker = Overhead * Sector; // VDisk writes the first grain right after the overhead
        void Case(string name, Func<byte[], byte[]> change, Outcome outcome, string? qemuDiffers = null) =>
            w.Add($"vmdk-stream-{name}", "vmdk", "image.vmdk", change((byte[])image.Clone()), outcome, qemuDiffers: qemuDiffers);
        Case("valid", b => b, Outcome.Valid);
        Case("no-footer", b => Bytes.Truncate(b, b.Length - 3 * Sector), Outcome.Corrupt(Info, "footer"));
        Case("end-of-stream-damaged", b => { b[b.Length - Sector + 12] = 9; return b; }, Outcome.Corrupt(Info, "footer"));
        Case("footer-gd-past-eof", b => { Bytes.Le64(b, b.Length - 2 * Sector + GdOffsetField, 1UL << 40); return b; }, Outcome.Corrupt(Info, "gdOffset"), "QEMU does not check a stream-optimized footer against its header; VDisk refuses a footer that disagrees or points past the file");
        Case("footer-capacity-differs", b => { Bytes.Le64(b, b.Length - 2 * Sector + CapacityField, CapacitySectors * 2); return b; }, Outcome.Corrupt(Info, "footer"), "QEMU does not check a stream-optimized footer against its header; VDisk refuses a footer that disagrees or points past the file");
        Case("grain-marker-lba-wrong", b => { Bytes.Le64(b, firstGrainMarker, 999); return b; }, Outcome.Corrupt(Read, "LBA"), "QEMU ignores the LBA in grain markers; VDisk refuses a grain whose marker names another LBA");
        Case("grain-marker-size-zero", b => { Bytes.Le32(b, firstGrainMarker + 8, 0); return b; }, Outcome.Corrupt(Read, "size"));
        Case("grain-marker-size-max", b => { Bytes.Le32(b, firstGrainMarker + 8, uint.MaxValue); return b; }, Outcome.Corrupt(Read, "size"));
        Case("grain-data-garbage", b => { Array.Fill(b, (byte)0xee, firstGrainMarker + 12, 64); return b; }, Outcome.Corrupt(Read, "grain"));
        Case("grain-size-largest", b =>
        {
            Bytes.Le64(b, GrainSizeField, 0x200000);
            Bytes.Le64(b, b.Length - 2 * Sector + GrainSizeField, 0x200000);
            return b;
        }, Outcome.Unsupported(Info, "grainSize"), "QEMU reads compressed grains of up to 1 GiB, allocating that much for each; VDisk refuses compressed grains over 1 MiB");
    }

    // A VMware 3 (COWD) sparse file: recognised as VMDK, and refused.
    private static void Cowd(CorpusWriter w)
    {
        var image = new byte[4 * Sector];
        "COWD"u8.CopyTo(image);
        Bytes.Le32(image, 4, 1);
        w.Add("vmdk-cowd-vmware3", "vmdk", "image.vmdk", image, Outcome.Unsupported(Info, "COWD"));
    }
}
