// Issue 7, item 2: a block device as the destination is written in place (the device node stays), as raw, like
// qemu-img convert onto /dev/sdX; and what cannot take an image is refused. Real loop devices (losetup) over
// backing files filled with old data, so every byte the conversion should have written is checked; reached through
// private device nodes in the test folder (see LoopDevice).
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Operations;

public class BlockDeviceOutputTests
{
    private const int ImageBytes = 8 << 20, DeviceBytes = 12 << 20;
    private const byte OldData = 0xee;

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void RawOutputIsWrittenIntoTheDeviceInPlace(bool deviceCannotZeroQuickly)
    {
        HostSetup.RequireRoot();
        Qemu.Require();
        using var dir = new TempFolder();
        string source = SourceWithHoles(dir);
        string expected = dir.File("expected.raw");
        Qemu.Img("convert", "-O", "raw", source, expected); // the reference: what qemu-img writes

        // A loop device over a file on ramfs cannot zero without writing (no write-zeroes, no discard).
        using var ramfs = deviceCannotZeroQuickly ? new ScratchMount(dir.File("ramfs"), "ramfs") : null;
        string backing = OldDataFile(ramfs?.File("backing") ?? dir.File("backing"));
        using var device = new LoopDevice(backing);
        var node = HostFileInfo.Of(device.Path);

        var result = ConvertImage.Run(source, device.Path, new ConvertOptions { DestinationFormat = ImageFormat.Raw, Overwrite = true });

        Assert.Equal(ImageBytes, result.VirtualSize);
        Assert.Equal(node, HostFileInfo.Of(device.Path)); // the same device node, still a block device
        Assert.Equal(HostFileType.BlockDevice, node.Type);
        var written = device.Read(DeviceBytes);
        Assert.True(written.AsSpan(0, ImageBytes).SequenceEqual(File.ReadAllBytes(expected)), "the device's first 8 MiB differ from qemu-img's raw output");
        Assert.True(written.AsSpan(ImageBytes).IndexOfAnyExcept(OldData) < 0, "bytes past the image were changed");
        Assert.Equal(new[] { "backing", "backing.dev", "expected.raw", "src.qcow2" }.Where(n => !deviceCannotZeroQuickly || !n.StartsWith("backing")),
            Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order());
    }

    [SkippableFact]
    public void ADeviceThatCannotTakeTheImageIsRefusedUntouched()
    {
        HostSetup.RequireRoot();
        using var dir = new TempFolder();
        string source = SourceWithHoles(dir);
        using var small = new LoopDevice(OldDataFile(dir.File("small"), 4 << 20));
        using var device = new LoopDevice(OldDataFile(dir.File("backing")));
        using var readOnly = new LoopDevice(OldDataFile(dir.File("readonly")), readOnly: true);
        var raw = new ConvertOptions { DestinationFormat = ImageFormat.Raw, Overwrite = true };

        AssertRefused(VDiskErrorKind.UnsupportedDestination, "less than the image's virtual size", () => ConvertImage.Run(source, small.Path, raw));
        AssertRefused(VDiskErrorKind.UnsupportedDestination, "only raw output", () => ConvertImage.Run(source, device.Path, raw with { DestinationFormat = ImageFormat.Qcow2 }));
        AssertRefused(VDiskErrorKind.AlreadyExists, "-Force", () => ConvertImage.Run(source, device.Path, raw with { Overwrite = false }));
        AssertRefused(VDiskErrorKind.InvalidArgument, "preallocation 'Full'", () => ConvertImage.Run(source, device.Path, raw with { Preallocation = Preallocation.Full }));
        AssertRefused(VDiskErrorKind.InvalidArgument, "O_DIRECT", () => ConvertImage.Run(source, device.Path, raw with { CacheMode = CacheMode.None }));
        AssertRefused(VDiskErrorKind.ReadOnly, "read-only", () => ConvertImage.Run(source, readOnly.Path, raw));
        AssertRefused(VDiskErrorKind.UnsupportedDestination, "block device", () => CreateImage.Run(device.Path, new CreateOptions { Format = ImageFormat.Raw, Size = 1 << 20 }, overwrite: true));

        foreach (var d in new[] { small, device, readOnly })
            Assert.True(d.Read(4 << 20).AsSpan().IndexOfAnyExcept(OldData) < 0, $"{d.Path} was written");
    }

    [SkippableFact]
    public void ADeviceInUseIsRefused()
    {
        HostSetup.RequireRoot();
        Qemu.Require();
        using var dir = new TempFolder();
        string source = SourceWithHoles(dir);
        using var device = new LoopDevice(OldDataFile(dir.File("backing")));
        var raw = new ConvertOptions { DestinationFormat = ImageFormat.Raw, Overwrite = true };

        using (new QemuHolder(device.Path, "raw")) // a VM using the device
            AssertRefused(VDiskErrorKind.InUse, "in use", () => ConvertImage.Run(source, device.Path, raw));
        Assert.True(device.Read(DeviceBytes).AsSpan().IndexOfAnyExcept(OldData) < 0, "the device a VM holds was written");

        HostSetup.Run("mkfs.ext4", "-q", "-F", device.Path);
        Directory.CreateDirectory(dir.File("mnt"));
        HostSetup.Run("mount", device.Path, dir.File("mnt"));
        try
        {
            AssertRefused(VDiskErrorKind.InUse, "mounted", () => ConvertImage.Run(source, device.Path, raw));
        }
        finally
        {
            HostSetup.Run("umount", dir.File("mnt"));
        }
        // The mount itself updates the superblock; what must not be there is the source's data.
        Assert.False(device.Read(2 << 20).AsSpan(1 << 20).SequenceEqual(Images.Pattern(1 << 20, 11)), "the mounted device was written");
    }

    private static void AssertRefused(VDiskErrorKind kind, string text, Action run)
    {
        var e = Assert.Throws<VDiskException>(run);
        Assert.Equal(kind, e.Kind);
        Assert.Contains(text, e.Message);
    }

    // An 8 MiB qcow2 with data at 1 MiB and 5 MiB, a zeroed range, and holes everywhere else.
    private static string SourceWithHoles(TempFolder dir)
    {
        string source = dir.File("src.qcow2");
        Images.Create(source, new CreateOptions { Size = ImageBytes });
        using var disk = Images.OpenWritable(source);
        disk.Write(1 << 20, Images.Pattern(1 << 20, 11));
        disk.Write(5 << 20, Images.Pattern(300_000, 12));
        disk.WriteZeroes(2 << 20, 1 << 20);
        return source;
    }

    private static string OldDataFile(string path, int length = DeviceBytes)
    {
        var bytes = new byte[length];
        Array.Fill(bytes, OldData);
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
