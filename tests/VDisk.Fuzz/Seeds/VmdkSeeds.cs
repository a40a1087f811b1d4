// VMDK seeds. Sparse files: monolithicSparse with 4 KiB and 64 KiB grains, a child naming its parent, and
// streamOptimized (footer, markers, compressed grains), from the engine and (when installed) qemu-img, and a
// minimal 4 KiB compressed extent laid out by hand.
// Descriptors: the descriptors embedded in those files, the descriptor files of the flat and split
// subformats, and hand-made variants (CRLF line ends, other extent types and access modes, a disk database).
using System.Buffers.Binary;
using System.Text;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Vmdk;
using VDisk.Engine.Operations;

namespace VDisk.Fuzz.Seeds;

internal static class VmdkSeeds
{
    private const long K = 1024, M = 1024 * 1024;
    private const int OverheadOffset = 64, DescriptorOffsetOffset = 28, DescriptorSizeOffset = 36, CompressAlgorithmOffset = 77;

    public static IEnumerable<Seed> Sparse(SeedWorkspace w)
    {
        (long, int)[] someData = { (0, 6 * 1024), (300 * K, 512), (900 * K, 4096) };
        yield return SparseSeed(Filled(w, "sparse-g4k.vmdk", new CreateOptions { Size = 1 * M, ClusterSize = 4096 }, someData));
        string parent = Filled(w, "sparse-g64k.vmdk", new CreateOptions { Size = 16 * M }, new[] { (0L, 512) });
        yield return SparseSeed(parent);
        yield return SparseSeed(Filled(w, "sparse-child.vmdk",
            new CreateOptions { ClusterSize = 4096, BackingPath = parent, BackingFormat = ImageFormat.Vmdk }, new[] { (4 * K, 512) }));

        yield return MinimalStream();
        string raw = w.Raw("source.raw", 512 * K, (0, 10 * 1024), (128 * K, 3000), (500 * K, 12 * 1024));
        yield return SparseSeed(w.Convert(raw, "stream.vmdk", new ConvertOptions
        {
            DestinationFormat = ImageFormat.Vmdk, Subformat = ImageSubformat.StreamOptimized, ClusterSize = 4096,
        }));

        if (w.QemuImg is null) yield break;
        w.Qemu("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, "qemu-stream.vmdk");
        yield return SparseSeed(w.PathOf("qemu-stream.vmdk"));
        w.Qemu("convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=monolithicSparse,zeroed_grain=on", raw, "qemu-sparse.vmdk");
        yield return SparseSeed(w.PathOf("qemu-sparse.vmdk"));
    }

    public static IEnumerable<Seed> Descriptors(SeedWorkspace w)
    {
        foreach (var sparse in Sparse(w))
        {
            var header = sparse.Bytes.AsSpan();
            long offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(header[DescriptorOffsetOffset..]) * 512;
            long length = (long)BinaryPrimitives.ReadUInt64LittleEndian(header[DescriptorSizeOffset..]) * 512;
            var text = header.Slice((int)offset, (int)Math.Min(length, header.Length - offset));
            int nul = text.IndexOf((byte)0);
            yield return new Seed("embedded-" + Path.ChangeExtension(sparse.Name, ".txt"), (nul < 0 ? text : text[..nul]).ToArray());
        }
        foreach (var (subformat, size) in new[] { (ImageSubformat.MonolithicFlat, 1 * M), (ImageSubformat.TwoGbMaxExtentSparse, 5 * 1024 * M), (ImageSubformat.TwoGbMaxExtentFlat, 3 * 1024 * M) })
        {
            string name = subformat.ToString().ToLowerInvariant() + ".vmdk";
            yield return new Seed(name, File.ReadAllBytes(w.Create(name, new CreateOptions { Format = ImageFormat.Vmdk, Subformat = subformat, Size = size })));
        }
        var lines = new[]
        {
            new VmdkExtentLine("RW", 2048, "SPARSE", "disk-s001.vmdk", 0, 1),
            new VmdkExtentLine("RDONLY", 4096, "FLAT", "/srv/images/disk-flat.vmdk", 128, 2),
            new VmdkExtentLine("NOACCESS", 512, "VMFS", "disk-vmfs.vmdk", 0, 3),
            new VmdkExtentLine("RW", 8192, "VMFSSPARSE", "disk-delta.vmdk", 0, 4),
        };
        string built = VmdkDescriptor.Build("twoGbMaxExtentSparse", 0x1234abcd, 0xfedc0987, "parent.vmdk", lines, 15872 * 512)
                .Replace("\n\n# The Disk Data Base", "\nRW 1024 ZERO\n\n# The Disk Data Base") // a ZERO extent has no file name
            + "ddb.uuid.image = \"6b9e0a4e-9b1e-4f3c-8c1f-0a1b2c3d4e5f\"\nddb.longContentID = \"0123456789abcdef\"\n";
        yield return new Seed("built-lf.vmdk", Encoding.UTF8.GetBytes(built));
        yield return new Seed("built-crlf.vmdk", Encoding.UTF8.GetBytes(built.Replace("\n", "\r\n").Replace("version=1", "version=3")));
    }

    // The smallest compressed extent the driver reads, laid out as qemu-img writes streamOptimized files (grain
    // directory at the start, markers): header, descriptor, directory, one grain table, one compressed 4 KiB grain.
    private static Seed MinimalStream()
    {
        const int grainSectors = 8, gdSector = 2, gtSector = 3, grainSector = 7;
        var image = new byte[grainSector * 512];
        var header = VmdkCreator.SparseHeader(2 * grainSectors, grainSectors, compressed: true);
        header.DescriptorSize = 1;
        header.GdOffset = gdSector;
        header.Overhead = grainSector;
        header.WriteTo(image);
        var descriptor = Encoding.UTF8.GetBytes(VmdkDescriptor.Build("streamOptimized", 0x0badcafe, VmdkDescriptor.NoParent, null,
            new[] { new VmdkExtentLine("RW", 2 * grainSectors, "SPARSE", "minimal-stream.vmdk", 0, 1) }, 2 * grainSectors * 512)
            .Split("\n# The Disk Data Base")[0]);
        descriptor.CopyTo(image, 512);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(gdSector * 512), gtSector);
        BinaryPrimitives.WriteUInt32LittleEndian(image.AsSpan(gtSector * 512), grainSector);
        var compressed = new byte[2 * grainSectors * 512];
        int length = VmdkGrainCompression.Compress(SeedWorkspace.Content(0, grainSectors * 512), compressed);
        var marker = new byte[12 + length];
        BinaryPrimitives.WriteUInt64LittleEndian(marker, 0);             // the grain's first sector (LBA 0)
        BinaryPrimitives.WriteUInt32LittleEndian(marker.AsSpan(8), (uint)length);
        compressed.AsSpan(0, length).CopyTo(marker.AsSpan(12));
        return new Seed("minimal-stream.vmdk", image.Concat(marker).ToArray());
    }

    private static string Filled(SeedWorkspace w, string name, CreateOptions options, (long, int)[] data)
    {
        string path = w.Create(name, options with { Format = ImageFormat.Vmdk });
        w.Fill(path, data);
        return path;
    }

    // Grains past the end of the file read as zeroes; the metadata before the first grain must stay, and a
    // compressed extent keeps its tail (the end-of-stream marker is a zero sector).
    private static Seed SparseSeed(string path)
    {
        Span<byte> header = stackalloc byte[512];
        using (var file = File.OpenRead(path)) file.ReadExactly(header);
        long overhead = (long)BinaryPrimitives.ReadUInt64LittleEndian(header[OverheadOffset..]) * 512;
        bool compressed = BinaryPrimitives.ReadUInt16LittleEndian(header[CompressAlgorithmOffset..]) != 0;
        return Seed.Trimmed(Path.GetFileName(path), path, compressed ? long.MaxValue : overhead);
    }
}
