// Key slots with QEMU 7.2: a passphrase the engine adds opens the image in qemu-io, one qemu-img amend adds opens it
// in the engine; a removed passphrase opens it nowhere; the last slot is never removed.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class EncryptionKeySlotInteropTests
{
    private const long Size = 4L << 20;

    [SkippableFact]
    public void SlotsTheEngineChangesAreQemusSlots()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = dir.File("k.qcow2");
        Secrets.QemuCreate(image, Size, Secrets.Pw);
        Secrets.QemuIo(image, Secrets.Pw, "write -P 0x3c 0 64k");

        int slot;
        using (Secrets.Use(Secrets.Pw))
        using (var added = Secrets.Key(Secrets.Pw2))
            slot = KeySlotImage.Add(image, added, Secrets.Fast);
        Assert.Equal(1, slot);
        Assert.Contains("read 65536/65536", Secrets.QemuIo(image, Secrets.Pw2, "read -P 0x3c 0 64k"));
        Assert.Equal(new[] { 0, 1 }, InspectImage.Run(image).Details.ActiveKeySlots);

        // The engine removes the first passphrase: qemu no longer opens with it, still with the second.
        using (Secrets.Use(Secrets.Pw2))
        using (var removed = Secrets.Key(Secrets.Pw))
            Assert.Equal(new[] { 0 }, KeySlotImage.Remove(image, removed));
        var (code, output) = HostSetup.TryRun("qemu-io", Secrets.Object("s", Secrets.Pw).Concat(new[] { "-c", "read 0 512", "--image-opts", Secrets.Opts(image) }).ToArray());
        Assert.NotEqual(0, code);
        Assert.Contains("Invalid password", output);
        Assert.Contains("read 65536/65536", Secrets.QemuIo(image, Secrets.Pw2, "read -P 0x3c 0 64k"));

        // The last slot stays.
        using (Secrets.Use(Secrets.Pw2))
        {
            var e = Assert.Throws<VDiskException>(() => KeySlotImage.Remove(image, null, slot: 1));
            Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        }
        Assert.Equal(new[] { 1 }, InspectImage.Run(image).Details.ActiveKeySlots);
        Secrets.AssertQemuCheckClean(image, Secrets.Pw2);
    }

    [SkippableFact]
    public void ASlotQemuAddsOpensInTheEngine()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = Secrets.CreateEncrypted(dir.File("k.qcow2"), Size, Secrets.Pw);
        using (Secrets.Use(Secrets.Pw))
        using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
            disk.Write(512, Enumerable.Repeat((byte)0x6d, 4096).ToArray());
        var amend = new List<string> { "amend" };
        amend.AddRange(Secrets.Object("s", Secrets.Pw));
        amend.AddRange(Secrets.Object("n", Secrets.Pw2));
        amend.AddRange(new[] { "--image-opts", Secrets.Opts(image), "-o", "encrypt.state=active,encrypt.new-secret=n,encrypt.iter-time=10" });
        Qemu.Img(amend.ToArray());
        Assert.Equal(new[] { 0, 1 }, InspectImage.Run(image).Details.ActiveKeySlots);
        using (Secrets.Use(Secrets.Pw2))
        using (var disk = ImageChain.Open(image))
            Assert.Equal(Enumerable.Repeat((byte)0x6d, 4096).ToArray(), EncryptionErrorTests.Read(disk, 512, 4096));
        using (Secrets.Use("not it"))
            Assert.Equal(VDiskErrorKind.WrongPassphrase, Assert.Throws<VDiskException>(() => ImageChain.Open(image).Dispose()).Kind);
    }
}
