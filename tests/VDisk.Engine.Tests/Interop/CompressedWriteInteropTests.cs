// Compressed clusters the engine writes (zlib with a 4 KiB window, zstd) are readable by QEMU, pack
// correctly with clean refcounts, and incompressible clusters are refused for compression.
using System.Text;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class CompressedWriteInteropTests
{
    [SkippableTheory]
    [InlineData(CompressionType.Zlib, 65536)]
    [InlineData(CompressionType.Zstd, 65536)]
    [InlineData(CompressionType.Zlib, 512)]
    [InlineData(CompressionType.Zlib, 2 << 20)]
    [InlineData(CompressionType.Zstd, 4096)]
    public void QemuReadsOurCompressedClusters(CompressionType type, int clusterSize)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        const int size = 8 << 20;
        string image = Images.Create(dir.File("c.qcow2"), new CreateOptions { Size = size, ClusterSize = clusterSize, CompressionType = type });
        var model = new byte[size];
        var random = new Random(clusterSize);
        var text = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 400_000).Select(i => $"{i % 977} spaced words {i % 13}\n")));
        int compressed = 0;
        using (var disk = Images.OpenWritable(image))
        {
            var writer = (Qcow2Driver)disk.Driver;
            var output = new byte[clusterSize * 2];
            for (long offset = 0; offset < size; offset += clusterSize)
            {
                var unit = model.AsSpan((int)offset, clusterSize);
                switch (random.Next(5))
                {
                    case 0: continue; // hole
                    case 1: random.NextBytes(unit); break; // incompressible
                    case 2: // repeats only further back than 4 KiB: a 32 KiB window would find them, QEMU's 4 KiB window must not need them
                        var block = Images.Pattern(Math.Min(6000, clusterSize), (int)offset);
                        for (int i = 0; i < clusterSize; i += block.Length) block.AsSpan(0, Math.Min(block.Length, clusterSize - i)).CopyTo(unit[i..]);
                        break;
                    default: text.AsSpan(random.Next(text.Length - clusterSize), clusterSize).CopyTo(unit); break;
                }
                if (writer.TryCompress(unit, output, out int length))
                {
                    if (type == CompressionType.Zlib) Assert.Equal(unit.ToArray(), StrictInflate.Run(output.AsSpan(0, length), clusterSize));
                    writer.WriteCompressed(offset, output.AsSpan(0, length));
                    compressed++;
                }
                else
                {
                    disk.Write(offset, unit);
                }
            }
            Assert.Equal(model, Images.ReadAll(disk));
        }
        Assert.True(compressed > 0);
        Qemu.CheckClean(image);
        string expected = dir.File("expected.raw");
        File.WriteAllBytes(expected, model);
        Qemu.AssertIdentical(image, expected, "-f", "qcow2", "-F", "raw");
        Assert.Contains(type == CompressionType.Zstd ? "zstd" : "zlib", Qemu.Img("info", image));
    }

    [Fact]
    public void RandomDataDoesNotCompress()
    {
        var storage = new VDisk.Engine.Storage.MemoryStorage();
        Qcow2Creator.WriteEmpty(storage, new CreateOptions { Size = 1 << 20 }, 1 << 20, null, null);
        using var driver = Qcow2Driver.Open(storage, true);
        var output = new byte[1 << 17];
        Assert.False(driver.TryCompress(Images.Pattern(65536, 1), output, out _));
        Assert.True(driver.TryCompress(new byte[65536], output, out int length));
        Assert.True(length < 200);
    }
}
