// FileStorage: positional I/O in every cache mode (including the O_DIRECT bounce path for unaligned
// requests), zeroing, hole punching and the sparse-file map.
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Storage;

public class FileStorageTests
{
    [Theory]
    [InlineData(CacheMode.Writeback)]
    [InlineData(CacheMode.None)]
    [InlineData(CacheMode.Writethrough)]
    [InlineData(CacheMode.DirectSync)]
    [InlineData(CacheMode.Unsafe)]
    public void UnalignedWritesAndReadsRoundTripInEveryMode(CacheMode mode)
    {
        using var dir = new TempFolder();
        string path = dir.File("f.bin");
        var expected = new byte[3 * 4096 + 100];
        using (var s = FileStorage.Create(path, overwrite: false, mode))
        {
            Assert.Equal(mode, s.CacheMode);
            var a = Images.Pattern(5000, 1);
            s.WriteAt(7, a);
            a.CopyTo(expected, 7);
            var b = Images.Pattern(4096, 2);
            s.WriteAt(8192, b);
            b.CopyTo(expected, 8192);
            var c = Images.Pattern(100, 3);
            s.WriteAt(12288, c);
            c.CopyTo(expected, 12288);
            s.Flush();
            Assert.Equal(expected.Length, s.Length);
            var back = new byte[expected.Length + 50];
            s.ReadAt(0, back);
            Assert.Equal(expected, back[..expected.Length]);
            Assert.True(back.AsSpan(expected.Length).IndexOfAnyExcept((byte)0) < 0); // past the end reads as zero
        }
        Assert.Equal(expected, File.ReadAllBytes(path));
    }

    [Fact]
    public void DiscardPunchesAHoleThatReadsAsZero()
    {
        using var dir = new TempFolder();
        using var s = FileStorage.Create(dir.File("f.bin"), overwrite: false);
        s.WriteAt(0, Images.Pattern(4 << 20, 1));
        long before = s.AllocatedBytes;
        s.Discard(1 << 20, 2 << 20);
        var middle = new byte[2 << 20];
        s.ReadAt(1 << 20, middle);
        Assert.True(middle.AsSpan().IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(4 << 20, s.Length);
        if (OperatingSystem.IsLinux()) Assert.True(s.AllocatedBytes < before, "hole punching should release blocks on Linux");
    }

    [SkippableFact]
    public void ExtentMapFindsDataAndHoles()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "SEEK_DATA/SEEK_HOLE are Linux-only");
        using var dir = new TempFolder();
        using var s = FileStorage.Create(dir.File("sparse.bin"), overwrite: false);
        s.SetLength(16 << 20);
        s.WriteAt(8 << 20, new byte[1 << 20].Select(_ => (byte)1).ToArray());
        Assert.True(s.TryGetExtent(0, out bool isData, out long length));
        Assert.False(isData);
        Assert.Equal(8 << 20, length);
        Assert.True(s.TryGetExtent(8 << 20, out isData, out length));
        Assert.True(isData);
        Assert.Equal(1 << 20, length);
    }

    [Fact]
    public void WriteZeroesPastTheEndExtendsTheFile()
    {
        using var dir = new TempFolder();
        using var s = FileStorage.Create(dir.File("f.bin"), overwrite: false);
        s.WriteAt(0, new byte[] { 1, 2, 3 });
        s.WriteZeroes(1000, 5000);
        Assert.Equal(6000, s.Length);
        s.WriteZeroes(1, 1);
        var head = new byte[3];
        s.ReadAt(0, head);
        Assert.Equal(new byte[] { 1, 0, 3 }, head);
    }
}
