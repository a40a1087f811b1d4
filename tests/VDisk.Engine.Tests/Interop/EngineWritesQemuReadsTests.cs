// What the engine writes (random sequences, into overlays, into images with qemu's internal snapshots,
// over compressed clusters) passes `qemu-img check` and reads back identically through qemu.
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class EngineWritesQemuReadsTests
{
    private const int Size = 24 << 20;

    [SkippableTheory]
    [InlineData("1.1", 65536, 16, false)]
    [InlineData("1.1", 512, 2, true)]
    [InlineData("0.10", 4096, 16, true)]
    [InlineData("1.1", 2 << 20, 64, true)]
    public void RandomSequencesCheckCleanAndMatch(string compat, int clusterSize, int refcountBits, bool withBacking)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var model = new byte[Size];
        string? backing = null;
        if (withBacking)
        {
            backing = dir.File("base.qcow2");
            Images.Create(backing, new CreateOptions { Size = Size, ClusterSize = 4096 });
            using var b = Images.OpenWritable(backing);
            var baseData = Images.Pattern(Size / 2, 99);
            b.Write(Size / 4, baseData);
            baseData.CopyTo(model, Size / 4);
        }
        string image = Images.Create(dir.File("top.qcow2"), new CreateOptions
        {
            Size = Size, Compat = compat, ClusterSize = clusterSize, RefcountBits = refcountBits, BackingPath = backing,
        });
        var random = new Random(clusterSize + refcountBits);
        using (var disk = Images.OpenWritable(image))
        {
            for (int i = 0; i < 300; i++)
            {
                int offset = random.Next(Size - 1);
                int length = Math.Min(Size - offset, random.Next(2) == 0 ? random.Next(1, 9000) : random.Next(1, 600_000));
                if (random.Next(5) == 0)
                {
                    disk.WriteZeroes(offset, length, unmap: random.Next(2) == 0);
                    Array.Clear(model, offset, length);
                }
                else
                {
                    var data = Images.Pattern(length, i);
                    disk.Write(offset, data);
                    data.CopyTo(model, offset);
                }
                if (i % 97 == 0) disk.Flush();
            }
        }
        Qemu.CheckClean(image);
        string expected = dir.File("expected.raw");
        File.WriteAllBytes(expected, model);
        Qemu.AssertIdentical(image, expected, "-f", "qcow2", "-F", "raw");
    }

    [SkippableTheory]
    [InlineData(512, 1)]
    [InlineData(4096, 16)]
    public void TinyMetadataCachesStillWriteConsistentImages(int clusterSize, int refcountBits)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = Images.Create(dir.File("tiny.qcow2"), new CreateOptions { Size = Size, ClusterSize = clusterSize, RefcountBits = refcountBits });
        var model = new byte[Size];
        var random = new Random(clusterSize);
        var driver = Qcow2Driver.Open(FileStorage.Open(image, write: true), true, 4L * clusterSize, 4L * clusterSize);
        using (var disk = new VirtualDisk(image, driver, null, writable: true))
        {
            for (int i = 0; i < 400; i++)
            {
                int offset = random.Next(Size - 1);
                int length = Math.Min(Size - offset, random.Next(1, 40_000));
                if (random.Next(4) == 0)
                {
                    disk.WriteZeroes(offset, length);
                    Array.Clear(model, offset, length);
                }
                else
                {
                    var data = Images.Pattern(length, i);
                    disk.Write(offset, data);
                    data.CopyTo(model, offset);
                }
            }
        }
        Qemu.CheckClean(image);
        string expected = dir.File("expected.raw");
        File.WriteAllBytes(expected, model);
        Qemu.AssertIdentical(image, expected, "-f", "qcow2", "-F", "raw");
    }

    [SkippableFact]
    public void WritesIntoImageWithInternalSnapshotsKeepTheSnapshots()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = dir.File("snap.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", image, "8M");
        QemuWrittenQcow2Tests.WriteWithQemuIo(image, "qcow2", "write -P 0x11 0 8M");
        Qemu.Img("snapshot", "-c", "before", image);
        string before = dir.File("before.raw");
        Qemu.Img("convert", "-O", "raw", image, before);

        var model = File.ReadAllBytes(before);
        using (var disk = Images.OpenWritable(image))
        {
            var data = Images.Pattern(3 << 20, 7);
            disk.Write(1000, data);
            data.CopyTo(model, 1000);
            disk.WriteZeroes(6 << 20, 1 << 20);
            Array.Clear(model, 6 << 20, 1 << 20);
        }
        Qemu.CheckClean(image);
        string now = dir.File("now.raw");
        File.WriteAllBytes(now, model);
        Qemu.AssertIdentical(image, now, "-f", "qcow2", "-F", "raw");
        string snapshotView = dir.File("snapshot.raw");
        Qemu.Img("convert", "-l", "snapshot.name=before", "-O", "raw", image, snapshotView);
        Assert.Equal(File.ReadAllBytes(before), File.ReadAllBytes(snapshotView));
    }

    [SkippableFact]
    public void OverwritingCompressedClustersFreesThem()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("source.raw"), image = dir.File("c.qcow2");
        var bytes = new byte[4 << 20];
        for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i / 4096);
        File.WriteAllBytes(source, bytes);
        Qemu.Img("convert", "-c", "-O", "qcow2", source, image);
        using (var disk = Images.OpenWritable(image))
        {
            var data = Images.Pattern(100_000, 3);
            disk.Write(70_000, data);
            data.CopyTo(bytes, 70_000);
            disk.WriteZeroes(1 << 20, 1 << 20, unmap: true);
            Array.Clear(bytes, 1 << 20, 1 << 20);
        }
        Qemu.CheckClean(image);
        File.WriteAllBytes(source, bytes);
        Qemu.AssertIdentical(image, source, "-f", "qcow2", "-F", "raw");
    }

    [SkippableFact]
    public void GrowsTheRefcountTableOnLargeWrites()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        // 512-byte clusters and 64-bit refcounts: one refcount block covers 32 KiB, one table cluster 2 MiB.
        string image = Images.Create(dir.File("grow.qcow2"), new CreateOptions { Size = 16 << 20, ClusterSize = 512, RefcountBits = 64 });
        var model = Images.Pattern(16 << 20, 1);
        using (var disk = Images.OpenWritable(image)) disk.Write(0, model);
        Qemu.CheckClean(image);
        string expected = dir.File("expected.raw");
        File.WriteAllBytes(expected, model);
        Qemu.AssertIdentical(image, expected, "-f", "qcow2", "-F", "raw");
    }
}
