// Interop with qemu-img 7.2, the reference: images qemu-img and qemu-io write read back byte for byte,
// and images VDisk writes pass `qemu-img check`, compare identical to their raw source and report the
// right virtual size. Skipped without qemu-img outside CI; failing in CI (Support/Qemu.cs).
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;
using static VDisk.Engine.Tests.Vdi.VdiTestSupport;

namespace VDisk.Engine.Tests.Vdi;

public sealed class VdiQemuInteropTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReadsWhatQemuIoWrites(bool isStatic)
    {
        Qemu.Require();
        string path = _temp.File("q.vdi");
        const long size = 10L * MiB;
        Qemu.Img(Create(isStatic, path, size.ToString()));
        Qemu.Io("-f", "vdi", "-t", "writeback",
            "-c", "write -P 0xab 3M 64k",
            "-c", "write -P 0x11 1048000 2000",      // across the first block boundary, unaligned
            "-c", $"write -P 0x22 {size - 512} 512", // the last sector
            path);
        var expected = new byte[size];
        Array.Fill(expected, (byte)0xab, 3 * MiB, 64 * 1024);
        Array.Fill(expected, (byte)0x11, 1048000, 2000);
        Array.Fill(expected, (byte)0x22, (int)size - 512, 512);

        using var disk = ImageChain.Open(path);
        Assert.Equal(size, disk.Length);
        Assert.Equal(isStatic ? "static" : "dynamic", disk.Driver.Details.Subformat);
        Assert.True(expected.AsSpan().SequenceEqual(Images.ReadAll(disk)));
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReadsWhatQemuImgConvertWrites(bool isStatic)
    {
        Qemu.Require();
        string raw = _temp.File("source.raw");
        var content = RawWithDataAndHoles(7L * MiB + 512);
        File.WriteAllBytes(raw, content);
        string vdi = _temp.File("converted.vdi");
        var args = new List<string> { "convert", "-f", "raw", "-O", "vdi" };
        if (isStatic) args.AddRange(new[] { "-o", "static=on" });
        args.AddRange(new[] { raw, vdi });
        Qemu.Img(args.ToArray());

        using var disk = ImageChain.Open(vdi);
        Assert.Equal(content.Length, disk.Length);
        Assert.True(content.AsSpan().SequenceEqual(Images.ReadAll(disk)));
        if (!isStatic) Assert.Equal(ExtentKind.Unallocated, disk.Driver.Map(2L * MiB, MiB).Kind); // an all-zero block stays a hole
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void QemuAcceptsWhatVDiskWrites(bool isStatic)
    {
        Qemu.Require();
        const long size = 9L * MiB + 1536;
        string vdi = _temp.File("ours.vdi");
        string raw = _temp.File("source.raw");
        CreateImage.Run(vdi, new CreateOptions { Format = ImageFormat.Vdi, Size = size, Subformat = isStatic ? ImageSubformat.Static : ImageSubformat.Default });
        var model = new byte[size];
        using (var disk = ImageChain.Open(vdi, new OpenOptions { Writable = true }))
        {
            void Write(long offset, byte[] data)
            {
                disk.Write(offset, data);
                data.CopyTo(model, offset);
            }
            Write(8L * MiB + 17, Pattern(0, MiB + 1000, 1));  // allocated out of guest order, into the partial last block
            Write(0, Pattern(0, 1, 2));
            Write(MiB - 3, Pattern(0, 6, 3));
            Write(4L * MiB, Pattern(0, 3 * MiB, 4));
            disk.WriteZeroes(5L * MiB, MiB, unmap: true);      // an allocated block zeroed (hole punched)
            Array.Clear(model, 5 * MiB, MiB);
            disk.WriteZeroes(2L * MiB, 2L * MiB, unmap: true); // never-written blocks: VDI_DISCARDED entries
        }
        File.WriteAllBytes(raw, model);

        Qemu.CheckClean(vdi);
        Qemu.AssertIdentical(vdi, raw, "-f", "vdi", "-F", "raw");
        var info = Qemu.Info(vdi);
        Assert.Equal("vdi", info.GetProperty("format").GetString());
        Assert.Equal(size, info.GetProperty("virtual-size").GetInt64());
        Assert.Equal(MiB, info.GetProperty("cluster-size").GetInt32());

        // qemu then allocates after our blocks, and we read what it wrote.
        Qemu.Io("-f", "vdi", "-t", "writeback", "-c", "write -P 0x5a 1536k 4k", vdi);
        Array.Fill(model, (byte)0x5a, 1536 * 1024, 4096);
        Qemu.CheckClean(vdi);
        using var reopened = ImageChain.Open(vdi);
        Assert.True(model.AsSpan().SequenceEqual(Images.ReadAll(reopened)));
    }

    // Same size, same options: the files differ only in the freshly generated UUIDs.
    [SkippableTheory]
    [InlineData(0L, false)]
    [InlineData(1L, false)]
    [InlineData(3000000L, false)]
    [InlineData(3000000L, true)]
    [InlineData(10L * MiB, false)]
    [InlineData(1L * 1024 * MiB + 1, false)]
    [InlineData(1L * 1024 * MiB + 1, true)]
    public void CreateLaysOutFilesLikeQemuImg(long size, bool isStatic)
    {
        Qemu.Require();
        string theirs = _temp.File("theirs.vdi");
        string ours = _temp.File("ours.vdi");
        Qemu.Img(Create(isStatic, theirs, size.ToString()));
        CreateImage.Run(ours, new CreateOptions { Format = ImageFormat.Vdi, Size = size, Subformat = isStatic ? ImageSubformat.Static : ImageSubformat.Dynamic });

        Assert.Equal(new FileInfo(theirs).Length, new FileInfo(ours).Length);
        var a = ReadPrefix(theirs, 0x200 + 1040 * 4);
        var b = ReadPrefix(ours, 0x200 + 1040 * 4);
        a.AsSpan(0x188, 32).Clear(); // uuid_image, uuid_last_snap
        b.AsSpan(0x188, 32).Clear();
        Assert.Equal(Convert.ToHexString(a), Convert.ToHexString(b));
        Qemu.CheckClean(ours);
    }

    private static string[] Create(bool isStatic, string path, string size)
        => isStatic ? new[] { "create", "-q", "-f", "vdi", "-o", "static=on", path, size } : new[] { "create", "-q", "-f", "vdi", path, size };

    private static byte[] ReadPrefix(string path, int length)
    {
        var buffer = new byte[length];
        using var file = File.OpenRead(path);
        file.ReadAtLeast(buffer, length, throwOnEndOfStream: false);
        return buffer;
    }

    // Random data in some blocks and parts of blocks, whole-block and partial holes.
    private static byte[] RawWithDataAndHoles(long size)
    {
        var content = new byte[size];
        var random = new Random(12345);
        void Fill(long offset, int length) => random.NextBytes(content.AsSpan((int)offset, length));
        Fill(0, MiB);                      // block 0 full
        Fill(MiB + 4096, 8192);            // block 1 mostly hole
        Fill(4L * MiB - 10, 20);           // across the 3/4 boundary
        Fill(5L * MiB, 2 * MiB);           // blocks 5 and 6 full
        Fill(size - 512, 512);             // the last sector, in the partial block 7
        return content;                    // block 2 is entirely zero
    }
}
