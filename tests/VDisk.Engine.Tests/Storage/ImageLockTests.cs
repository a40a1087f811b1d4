// QEMU-compatible image locks: an image a QEMU process has open for writing (like a running VM) is
// refused for conversion and writing, while read-only inspection still works; and QEMU sees our locks.
using System.Diagnostics;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Storage;

public class ImageLockTests
{
    [SkippableFact]
    public void ImageHeldByQemuForWritingIsInUse()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = Images.Create(dir.File("vm.qcow2"), new CreateOptions { Size = 4 << 20 });
        using var holder = HoldWithQemuIo(image);

        var write = Assert.Throws<VDiskException>(() => Images.OpenWritable(image));
        Assert.Equal(VDiskErrorKind.InUse, write.Kind);
        Assert.Contains("write", write.Message);
        var convert = Assert.Throws<VDiskException>(() => ConvertImage.Run(image, dir.File("copy.raw"), new ConvertOptions { DestinationFormat = ImageFormat.Raw }));
        Assert.Equal(VDiskErrorKind.InUse, convert.Kind);
        Assert.False(File.Exists(dir.File("copy.raw")));
        Assert.Equal(4 << 20, InspectImage.Run(image).VirtualSize); // read-only inspection does not lock
        using (ImageChain.Open(image, new OpenOptions { ForceShare = true })) { }
    }

    [SkippableFact]
    public void QemuSeesOurLocks()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = Images.Create(dir.File("busy.qcow2"), new CreateOptions { Size = 4 << 20 });
        using (Images.OpenWritable(image))
        {
            var (code, output) = Qemu.TryImg("info", image);
            Assert.NotEqual(0, code);
            Assert.Contains("lock", output);
            Assert.Equal(0, Qemu.TryImg("info", "-U", image).ExitCode);
        }
        Assert.Equal(0, Qemu.TryImg("info", image).ExitCode);
    }

    [Fact]
    public void ReadersShareButAWriterWaitsForThem()
    {
        using var dir = new TempFolder();
        string image = Images.Create(dir.File("shared.qcow2"), new CreateOptions { Size = 4 << 20 });
        using (Images.OpenReadOnly(image))
        using (Images.OpenReadOnly(image))
        {
            if (OperatingSystem.IsLinux())
                Assert.Equal(VDiskErrorKind.InUse, Assert.Throws<VDiskException>(() => Images.OpenWritable(image)).Kind);
        }
        using (Images.OpenWritable(image)) { }
    }

    private static Holder HoldWithQemuIo(string image)
    {
        // stdbuf: qemu-io's stdout is a pipe here, and its report must not wait in a buffer until it exits.
        var psi = new ProcessStartInfo("stdbuf") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-oL", "qemu-io", "-f", "qcow2", "-c", "write -P 1 0 4k", "-c", "sleep 20000", image }) psi.ArgumentList.Add(a);
        var process = Process.Start(psi)!;
        // Its first command's report means the image is open and locked. (Polling with qemu-img would race: a
        // qemu-img holding its read lock at the moment qemu-io opens makes qemu-io fail.)
        string? line = process.StandardOutput.ReadLine();
        if (line is null || !line.StartsWith("wrote", StringComparison.Ordinal))
            throw new InvalidOperationException($"qemu-io did not open the image: {line} {process.StandardError.ReadToEnd()}");
        return new Holder(process);
    }

    private sealed class Holder(Process process) : IDisposable
    {
        public void Dispose()
        {
            process.Kill();
            process.WaitForExit();
            process.Dispose();
        }
    }
}
