// Mapping and resizing encrypted images: a hole in the host file under an allocated cluster is not "zero" (it would
// decrypt to noise, not zeroes), and a grown or shrunk encrypted image reads right in QEMU.
using System.Diagnostics;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class EncryptedMapResizeInteropTests
{
    private const long Size = 4L << 20;

    [Fact]
    public void MapNeverCallsAHostHoleZero()
    {
        using var dir = new TempFolder();
        string image = Secrets.CreateEncrypted(dir.File("m.qcow2"), Size);
        using (Secrets.Use(Secrets.Pw))
        using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
            disk.Write(1 << 20, Enumerable.Repeat((byte)7, 3 * 65536).ToArray());
        var data = MapImage.Run(image).Where(r => r.Data).ToList();
        var range = Assert.Single(data);
        Assert.Equal(1 << 20, range.Start);
        Assert.False(range.Zero);
        Assert.NotNull(range.Offset);
        // Punch a hole in the file under the middle cluster: the host reads zeroes there, the guest does not.
        HostSetup.Run("fallocate", "-p", "-o", (range.Offset!.Value + 65536).ToString(), "-l", "65536", image);
        using (Secrets.Use(Secrets.Pw))
        {
            var after = MapImage.Run(image).Where(r => r.Start < (1 << 20) + 3 * 65536 && r.Start + r.Length > 1 << 20).ToList();
            Assert.All(after, r => Assert.True(r.Data && !r.Zero, $"{r.Start}+{r.Length} data={r.Data} zero={r.Zero}"));
            using var disk = ImageChain.Open(image);
            var middle = EncryptionErrorTests.Read(disk, (1 << 20) + 65536, 65536);
            Assert.NotEqual(new byte[65536], middle); // zero host bytes decrypt to noise, which the map must not call zero
        }
    }

    [Fact]
    public void TheDriverZeroesTheOldLastClusterThroughTheCipherWhenGrowing()
    {
        using var dir = new TempFolder();
        string image = Secrets.CreateEncrypted(dir.File("g.qcow2"), Size);
        using (Secrets.Use(Secrets.Pw))
        {
            using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
                disk.Write(Size - 65536, Images.Pattern(65536, 5));
            using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
                ((VDisk.Engine.Formats.Qcow2.Qcow2Driver)disk.Driver).Resize(Size - 65536 + 4096, Preallocation.Off, false, null, default);
            using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
                ((VDisk.Engine.Formats.Qcow2.Qcow2Driver)disk.Driver).Resize(Size, Preallocation.Off, false, null, default);
            using var grown = ImageChain.Open(image);
            var tail = EncryptionErrorTests.Read(grown, Size - 65536 + 4096, 65536 - 4096);
            Assert.Equal(new byte[65536 - 4096], tail); // zeroed by the driver itself, enciphered (plain zeroes would read as noise)
        }
    }

    [SkippableFact]
    public void GrownAndShrunkImagesReadRightInQemu()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = Secrets.CreateEncrypted(dir.File("r.qcow2"), Size), plain = dir.File("plain.raw");
        var mirror = new byte[3 * Size];
        using (Secrets.Use(Secrets.Pw))
        {
            using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
            {
                var a = Images.Pattern((int)Size - 1000, 1);
                disk.Write(1000, a);
                a.CopyTo(mirror, 1000);
            }
            ResizeImage.Run(image, new ResizeOptions { Size = 3 * Size });
            using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
            {
                Assert.Equal(mirror, Images.ReadAll(disk)); // the new area reads as zeroes
                var b = Images.Pattern(70_000, 2);
                disk.Write(3 * Size - 70_000, b);
                b.CopyTo(mirror, 3 * Size - 70_000);
            }
        }
        File.WriteAllBytes(plain, mirror);
        Secrets.AssertQemuCheckClean(image, Secrets.Pw);
        Secrets.AssertQemuIdentical(image, Secrets.Pw, plain);

        using (Secrets.Use(Secrets.Pw))
        {
            using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
            {
                var c = Images.Pattern(65536, 3); // the whole cluster the shrink cuts into keeps these bytes past its end
                disk.Write(Size, c);
                c.CopyTo(mirror, Size);
            }
            ResizeImage.Run(image, new ResizeOptions { Size = Size + 4096, Shrink = true });
        }
        File.WriteAllBytes(plain, mirror.AsSpan(0, (int)Size + 4096).ToArray());
        Secrets.AssertQemuCheckClean(image, Secrets.Pw);
        Secrets.AssertQemuIdentical(image, Secrets.Pw, plain);
        Assert.Equal(Size + 4096, InspectImage.Run(image).VirtualSize);

        // Growing again from the unaligned end zeroes the rest of the last cluster, enciphered: it reads as zeroes.
        var grown = new byte[2 * Size];
        mirror.AsSpan(0, (int)Size + 4096).CopyTo(grown);
        using (Secrets.Use(Secrets.Pw))
        {
            ResizeImage.Run(image, new ResizeOptions { Size = 2 * Size });
            using var disk = ImageChain.Open(image);
            Assert.Equal(grown, Images.ReadAll(disk));
        }
        File.WriteAllBytes(plain, grown);
        Secrets.AssertQemuIdentical(image, Secrets.Pw, plain);
    }
}
