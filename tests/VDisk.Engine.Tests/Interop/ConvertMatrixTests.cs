// Every pair of formats: a source made by qemu-img in one format, converted by VDisk into another,
// compares identical to the original (qemu-img compare) and passes qemu-img check where it can check.
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class ConvertMatrixTests
{
    private const int Size = 6 << 20;

    // Name, qemu-img convert arguments for a source of this kind, VDisk options for an output of this kind.
    private static readonly (string Name, string[] QemuArgs, ConvertOptions Ours)[] Kinds =
    {
        ("raw", new[] { "-O", "raw" }, new ConvertOptions { DestinationFormat = ImageFormat.Raw }),
        ("qcow2", new[] { "-O", "qcow2" }, new ConvertOptions { DestinationFormat = ImageFormat.Qcow2 }),
        ("qcow2-zlib", new[] { "-c", "-O", "qcow2" }, new ConvertOptions { Compress = true }),
        ("qcow2-zstd", new[] { "-c", "-O", "qcow2", "-o", "compression_type=zstd" }, new ConvertOptions { Compress = true, CompressionType = CompressionType.Zstd }),
        ("vmdk-sparse", new[] { "-O", "vmdk" }, new ConvertOptions { DestinationFormat = ImageFormat.Vmdk }),
        ("vmdk-stream", new[] { "-O", "vmdk", "-o", "subformat=streamOptimized" }, new ConvertOptions { DestinationFormat = ImageFormat.Vmdk, Subformat = ImageSubformat.StreamOptimized }),
        ("vmdk-flat", new[] { "-O", "vmdk", "-o", "subformat=monolithicFlat" }, new ConvertOptions { DestinationFormat = ImageFormat.Vmdk, Subformat = ImageSubformat.MonolithicFlat }),
        ("vmdk-2gsparse", new[] { "-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse" }, new ConvertOptions { DestinationFormat = ImageFormat.Vmdk, Subformat = ImageSubformat.TwoGbMaxExtentSparse }),
        ("vmdk-2gflat", new[] { "-O", "vmdk", "-o", "subformat=twoGbMaxExtentFlat" }, new ConvertOptions { DestinationFormat = ImageFormat.Vmdk, Subformat = ImageSubformat.TwoGbMaxExtentFlat }),
        ("vdi", new[] { "-O", "vdi" }, new ConvertOptions { DestinationFormat = ImageFormat.Vdi }),
        ("vdi-static", new[] { "-O", "vdi", "-o", "static=on" }, new ConvertOptions { DestinationFormat = ImageFormat.Vdi, Subformat = ImageSubformat.Static }),
    };

    public static TheoryData<string> Sources => new(Kinds.Select(k => k.Name));

    [SkippableTheory]
    [MemberData(nameof(Sources))]
    public void EverySourceConvertsToEveryOutput(string sourceKind)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string original = dir.File("original.raw");
        SampleData.WriteRaw(original, Size, 17);
        var source = Kinds.Single(k => k.Name == sourceKind);
        string sourcePath = dir.File($"source-{sourceKind}.{Extension(source.Ours)}");
        Qemu.Img(new[] { "convert", "-f", "raw" }.Concat(source.QemuArgs).Concat(new[] { original, sourcePath }).ToArray());

        foreach (var (name, _, ours) in Kinds)
        {
            string output = dir.File($"out-{name}.{Extension(ours)}");
            ConvertImage.Run(sourcePath, output, ours);
            Qemu.AssertIdentical(original, output, "-f", "raw", "-F", FormatProbe.Name(ours.DestinationFormat));
            if (ours.DestinationFormat != ImageFormat.Raw) Qemu.CheckClean(output);
        }
    }

    private static string Extension(ConvertOptions o) => FormatProbe.Name(o.DestinationFormat);
}
