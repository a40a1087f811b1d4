// Internal snapshots interoperate with qemu-img both ways (qemu-img snapshot -l/-a/-d on ours, ours on qemu's),
// keep qemu-img check clean with no leaks, restore the virtual size they recorded, and refuse what they cannot do.
using System.Text.Json;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Qcow2;

public class Qcow2SnapshotTests
{
    private const int Size = 4 << 20;

    [SkippableFact]
    public void QemuListsAppliesAndDeletesOurSnapshots()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = Images.Create(dir.File("a.qcow2"), new CreateOptions { Size = Size });
        var first = Images.Pattern(Size, 1);
        var second = (byte[])first.Clone();
        Images.Pattern(Size / 4, 2).CopyTo(second, Size / 8);
        using (var disk = Images.OpenWritable(path))
        {
            disk.Write(0, first);
            Image(disk).CreateSnapshot("before", DateTime.UtcNow);
            disk.Write(Size / 8, second.AsSpan(Size / 8, Size / 4));
            Image(disk).CreateSnapshot("after", DateTime.UtcNow);
        }
        Qemu.CheckClean(path);
        using (var list = JsonDocument.Parse(Qemu.Img("info", "--output=json", path)))
            Assert.Equal(new[] { ("1", "before"), ("2", "after") },
                list.RootElement.GetProperty("snapshots").EnumerateArray().Select(s => (s.GetProperty("id").GetString()!, s.GetProperty("name").GetString()!)));
        Qemu.Img("snapshot", "-a", "before", path);
        Assert.Equal(first, ReadAll(path));
        Qemu.Img("snapshot", "-d", "before", path);
        Qemu.Img("snapshot", "-a", "after", path);
        Assert.Equal(second, ReadAll(path));
        Qemu.CheckClean(path);
    }

    [SkippableFact]
    public void WeListAppliesAndDeleteQemusSnapshots()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("q.qcow2");
        Qemu.Img("create", "-f", "qcow2", path, Size.ToString());
        Qemu.Io("-f", "qcow2", "-c", "write -P 0x11 0 1M", path);
        Qemu.Img("snapshot", "-c", "one", path);
        Qemu.Io("-f", "qcow2", "-c", "write -P 0x22 512k 1M", path);
        Qemu.Img("snapshot", "-c", "two", path);
        Qemu.Io("-f", "qcow2", "-c", "write -P 0x33 0 4M", path);
        var expectedOne = new byte[Size];
        expectedOne.AsSpan(0, 1 << 20).Fill(0x11);
        using (var disk = Images.OpenWritable(path))
        {
            var image = Image(disk);
            Assert.Equal(new[] { "one", "two" }, image.Snapshots().Select(s => s.Name));
            image.ApplySnapshot(image.FindSnapshot("one"));
            Assert.Equal(expectedOne, Images.ReadAll(disk));
            image.DeleteSnapshot(image.FindSnapshot("two"));
            image.DeleteSnapshot(image.FindSnapshot("one"));
        }
        var (code, output) = Qemu.TryImg("check", "--output=json", path);
        Assert.True(code == 0, output);
        Assert.Equal(expectedOne, ReadAll(path));
        Assert.DoesNotContain("snapshots", Qemu.Img("info", "--output=json", path));
    }

    [Fact]
    public void ApplyingRestoresTheVirtualSizeTheSnapshotRecorded()
    {
        var (disk, storage) = MemoryImages.Qcow2(Size);
        using (disk)
        {
            disk.Write(0, Images.Pattern(65536, 3));
            var image = Image(disk);
            var small = image.CreateSnapshot("small", DateTime.UtcNow);
            image.HeaderUpdater.Update(h => h.Size = Size * 2L); // what Resize-VDisk will do
            image.GrowL1((int)Qcow2Header.RequiredL1Size(Size * 2L, image.Geometry.ClusterBits));
            Assert.Equal(Size * 2L, disk.Length);
            image.ApplySnapshot(small);
            Assert.Equal(Size, disk.Length);
            Assert.Equal(Images.Pattern(65536, 3), Read(disk, 0, 65536));
        }
        Assert.True(Qcow2Check.Run(storage).IsClean);
    }

    [Fact]
    public void OneBitRefcountsCannotHoldASnapshotAndNothingChanges()
    {
        var (disk, storage) = MemoryImages.Qcow2(Size, new CreateOptions { RefcountBits = 1 });
        using (disk)
        {
            disk.Write(0, Images.Pattern(65536, 4));
            disk.Flush();
            var before = storage.ToArray();
            var e = Assert.Throws<VDiskException>(() => Image(disk).CreateSnapshot("x", DateTime.UtcNow));
            Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
            Assert.Contains("1-bit refcounts", e.Message);
            Assert.Equal(before, storage.ToArray());
        }
    }

    [Fact]
    public void IdsAreNewEvenWhenNamesRepeatAndDeletionFreesEveryCluster()
    {
        var (disk, storage) = MemoryImages.Qcow2(Size);
        using (disk)
        {
            var image = Image(disk);
            disk.Write(0, Images.Pattern(1 << 20, 5));
            var a = image.CreateSnapshot("nightly", DateTime.UtcNow);
            disk.Write(0, Images.Pattern(1 << 20, 6));
            var b = image.CreateSnapshot("nightly", DateTime.UtcNow); // qemu-img allows a repeated name; ids stay unique
            Assert.Equal(("1", "2"), (a.Id, b.Id));
            image.DeleteSnapshot(a);
            image.DeleteSnapshot(b);
            Assert.Empty(image.Snapshots());
        }
        var report = Qcow2Check.Run(storage);
        Assert.Equal(0, report.Corruptions);
        Assert.Equal(0, report.Leaks);
    }

    internal static Qcow2Image Image(VirtualDisk disk) => ((Qcow2Driver)disk.Driver).Image;

    private static byte[] ReadAll(string path)
    {
        using var disk = Images.OpenReadOnly(path);
        return Images.ReadAll(disk);
    }

    private static byte[] Read(VirtualDisk disk, long offset, int length)
    {
        var buffer = new byte[length];
        disk.Read(offset, buffer);
        return buffer;
    }
}
