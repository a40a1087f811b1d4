// Compressed conversion at every qcow2 cluster size (512 B to 2 MiB) with zlib and zstd: a compressed unit is
// always one whole cluster, so qemu-img compare finds the output identical to the source and qemu-img check
// finds it clean. (A 1 MiB pipeline unit used to split 2 MiB clusters in two: both halves landed on the same
// cluster and qemu read garbage.)
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class CompressedConvertTests
{
    private const int Size = 8 << 20;

    public static TheoryData<CompressionType, int> EveryClusterSize()
    {
        var data = new TheoryData<CompressionType, int>();
        foreach (var type in new[] { CompressionType.Zlib, CompressionType.Zstd })
            for (int cluster = 512; cluster <= 2 << 20; cluster *= 2)
                data.Add(type, cluster);
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(EveryClusterSize))]
    public void CompressedOutputComparesIdenticalAndChecksClean(CompressionType type, int clusterSize)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("source.raw");
        var bytes = SampleData.WriteRaw(source, Size, clusterSize);
        string output = dir.File("out.qcow2");
        var result = ConvertImage.Run(source, output, new ConvertOptions { Compress = true, CompressionType = type, ClusterSize = clusterSize });
        Assert.True(result.CompressedUnits > 0, "the sample should have compressible clusters");
        Qemu.AssertIdentical(source, output, "-f", "raw", "-F", "qcow2");
        Qemu.CheckClean(output);
        using var disk = Images.OpenReadOnly(output);
        Assert.Equal(bytes, Images.ReadAll(disk));
    }
}
