// FileStorage: positional I/O in every cache mode (including the O_DIRECT bounce path for unaligned
// requests), zeroing, hole punching and the sparse-file map; O_DIRECT really in effect, refused file systems
// named, the direct-write lock, and the aligned buffer pool.
using VDisk.Engine.Core;
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

public class DirectIoTests
{
    // O_DSYNC is 010000 (octal) on x86-64 and arm64; O_SYNC (04010000) adds __O_SYNC (04000000), which no mode sets:
    // QEMU's writethrough is write + fdatasync, whose per-write equivalent is O_DSYNC. O_DIRECT is 040000 on x86-64
    // (0200000 on arm64).
    internal const int ODsync = 0x1000;
    internal const int OSyncOnly = 0x100000;
    internal static int ODirect => LinuxFileApi.DirectFlag;

    [SkippableTheory]
    [InlineData(CacheMode.None, true, false)]
    [InlineData(CacheMode.DirectSync, true, true)]
    [InlineData(CacheMode.Writeback, false, false)]
    [InlineData(CacheMode.Writethrough, false, true)]
    [InlineData(CacheMode.Unsafe, false, false)]
    public void EachCacheModeOpensWithItsODirectAndODsyncFlags(CacheMode mode, bool direct, bool sync)
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "/proc/self/fdinfo is Linux-only");
        if (System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64)
            Assert.Equal(Convert.ToInt32("040000", 8), ODirect);
        using var dir = new TempFolder();
        using (var created = FileStorage.Create(dir.File("f.bin"), overwrite: false, mode))
        {
            Assert.Equal(direct, (OpenFlags(created) & ODirect) != 0);
            Assert.Equal(sync, (OpenFlags(created) & ODsync) != 0);
            Assert.Equal(0, OpenFlags(created) & OSyncOnly);
            Assert.Equal(direct ? AlignedBufferPool.Alignment : 1, created.Alignment);
        }
        foreach (bool write in new[] { false, true })
        {
            using var opened = FileStorage.Open(dir.File("f.bin"), write, mode);
            Assert.Equal(direct, (OpenFlags(opened) & ODirect) != 0);
            Assert.Equal(sync, (OpenFlags(opened) & ODsync) != 0);
            Assert.Equal(0, OpenFlags(opened) & OSyncOnly);
        }
    }

    // tmpfs does O_DIRECT since Linux 6.6; ramfs never has. A private ramfs needs root (CI runs as root).
    [SkippableFact]
    public void AFileSystemWithoutODirectIsAnErrorNamingIt()
    {
        HostSetup.RequireRoot();
        using var dir = new TempFolder();
        using var ramfs = new ScratchMount(dir.File("ramfs"), "ramfs");
        string path = ramfs.File("disk.raw");
        var e = Assert.Throws<VDiskException>(() => FileStorage.Create(path, overwrite: false, CacheMode.None));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        Assert.Contains("ramfs", e.Message);
        Assert.Contains("O_DIRECT", e.Message);
        Assert.Contains(path, e.Message);
    }

    // An unaligned direct write is a read-modify-write of whole blocks; an aligned write to the same block must wait
    // for it, or the read-modify-write puts the old bytes back over it.
    [Fact]
    public void AlignedAndUnalignedDirectWritesToOneBlockNeverLoseEachOther()
    {
        using var dir = new TempFolder();
        using var s = FileStorage.Create(dir.File("f.bin"), overwrite: false, CacheMode.None);
        var zero = new byte[4096];
        using var aligned = AlignedBufferPool.Shared.Rent(4096);
        aligned.Memory.Span.Fill(0xAA);
        var small = Enumerable.Repeat((byte)0x55, 100).ToArray();
        var back = new byte[4096];
        const int Rounds = 2000;
        using var start = new Barrier(2);
        int lost = 0;
        var unalignedWriter = new Thread(() =>
        {
            for (int i = 0; i < Rounds; i++)
            {
                start.SignalAndWait();
                s.WriteAt(10, small);
                start.SignalAndWait();
            }
        });
        unalignedWriter.Start();
        for (int i = 0; i < Rounds; i++)
        {
            s.WriteAt(0, zero);
            start.SignalAndWait();
            s.WriteAt(0, aligned.Memory.Span);
            start.SignalAndWait();
            s.ReadAt(0, back);
            if (back[0] != 0xAA || back[4095] != 0xAA) lost++;
        }
        unalignedWriter.Join();
        Assert.True(lost == 0, $"{lost} of {Rounds} aligned writes were lost under a concurrent unaligned one");
    }

    [Fact]
    public void PooledBuffersAreAlignedSizedAndReused()
    {
        IntPtr first;
        using (var a = AlignedBufferPool.Shared.Rent(5000))
        {
            Assert.Equal(5000, a.Memory.Length);
            first = Address(a);
            Assert.Equal(0, first % AlignedBufferPool.Alignment);
        }
        using var b = AlignedBufferPool.Shared.Rent(6000); // the same 8 KiB size class
        Assert.Equal(6000, b.Memory.Length);
        Assert.Equal(0, Address(b) % AlignedBufferPool.Alignment);
    }

    private static unsafe IntPtr Address(System.Buffers.IMemoryOwner<byte> owner)
    {
        fixed (byte* p = owner.Memory.Span) return (IntPtr)p;
    }

    /// <summary>The open flags of the storage's file, from the kernel (/proc/self/fdinfo, octal).</summary>
    internal static int OpenFlags(FileStorage s)
    {
        string line = File.ReadLines($"/proc/self/fdinfo/{s.Handle.DangerousGetHandle()}").First(l => l.StartsWith("flags:"));
        return Convert.ToInt32(line["flags:".Length..].Trim(), 8);
    }
}
