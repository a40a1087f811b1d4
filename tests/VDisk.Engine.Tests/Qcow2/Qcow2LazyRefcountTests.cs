// Lazy refcounts: the dirty bit is on disk while the image is open for writing and cleared on a clean
// close; an image left dirty is refused for writing until repaired (Test-VDisk -Repair All), and readable meanwhile.
using System.Buffers.Binary;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Qcow2;

public class Qcow2LazyRefcountTests
{
    [Fact]
    public void DirtyBitIsSetWhileOpenAndClearedOnClose()
    {
        using var dir = new TempFolder();
        string path = Images.Create(dir.File("lazy.qcow2"), new CreateOptions { Size = 4 << 20, LazyRefcounts = true });
        Assert.False(IsDirtyOnDisk(path));
        using (var disk = Images.OpenWritable(path))
        {
            disk.Write(0, new byte[70_000]);
            Assert.True(IsDirtyOnDisk(path));
        }
        Assert.False(IsDirtyOnDisk(path));
    }

    [Fact]
    public void ImageWithoutLazyRefcountsNeverGoesDirty()
    {
        using var dir = new TempFolder();
        string path = Images.Create(dir.File("eager.qcow2"), new CreateOptions { Size = 4 << 20 });
        using var disk = Images.OpenWritable(path);
        disk.Write(0, new byte[70_000]);
        Assert.False(IsDirtyOnDisk(path));
    }

    [Fact]
    public void DirtyImageIsRefusedForWritingButReadable()
    {
        using var dir = new TempFolder();
        string path = Images.Create(dir.File("crashed.qcow2"), new CreateOptions { Size = 4 << 20, LazyRefcounts = true });
        var bytes = File.ReadAllBytes(path);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan(Qcow2Header.IncompatibleOffset), Qcow2Features.Dirty);
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<VDiskException>(() => Images.OpenWritable(path));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains("not closed cleanly", e.Message);
        Assert.Contains("Test-VDisk -Repair All", e.Message);
        using (var reader = Images.OpenReadOnly(path)) Assert.True(reader.Driver.Details.Dirty);

        var repaired = CheckImage.Run(path, RepairMode.All); // what Test-VDisk -Repair All runs
        Assert.True(repaired.IsHealthy);
        Assert.False(IsDirtyOnDisk(path));
        using var writer = Images.OpenWritable(path);
        writer.Write(0, new byte[4096]);
    }

    private static bool IsDirtyOnDisk(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var header = new byte[112];
        f.ReadExactly(header);
        return (BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(Qcow2Header.IncompatibleOffset)) & Qcow2Features.Dirty) != 0;
    }
}
