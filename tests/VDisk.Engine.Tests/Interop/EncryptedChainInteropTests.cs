// Encrypted backing chains with QEMU 7.2: an encrypted overlay (its own secret) and a plain overlay on an encrypted
// base, read through the engine with both passphrases in scope, and committed into the encrypted base.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class EncryptedChainInteropTests
{
    private const long Size = 8L << 20;

    [SkippableTheory]
    [InlineData(true)]
    [InlineData(false)]
    public void ReadsAndCommitsOverlayOnEncryptedBase(bool encryptedOverlay)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string baseImage = dir.File("base.qcow2"), overlay = dir.File("overlay.qcow2"), expected = dir.File("expected.raw");
        Secrets.QemuCreate(baseImage, Size, Secrets.Pw);
        Secrets.QemuIo(baseImage, Secrets.Pw, "write -P 0x11 0 3M", "write -P 0x12 6M 1M", "write -P 0x13 8388096 512");

        var create = new List<string> { "create", "-q", "-f", "qcow2", "-b", baseImage, "-F", "qcow2" };
        if (encryptedOverlay)
        {
            create.AddRange(Secrets.Object("s", Secrets.Pw2));
            create.AddRange(new[] { "-o", "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10" });
        }
        create.AddRange(new[] { overlay, Size.ToString() });
        Qemu.Img(create.ToArray());
        // qemu opens the chain with one secret per layer: the overlay's (if any) and the base's via backing.encrypt.key-secret.
        string opts = $"driver=qcow2,file.filename={overlay},backing.encrypt.key-secret=b" + (encryptedOverlay ? ",encrypt.key-secret=s" : "");
        var secrets = new List<string>(Secrets.Object("b", Secrets.Pw));
        if (encryptedOverlay) secrets.AddRange(Secrets.Object("s", Secrets.Pw2));
        var io = new List<string>(secrets) { "-t", "writeback", "-c", "write -P 0x21 1000 5000", "-c", "write -P 0x22 2M 2M", "-c", "write -z 6M 64k", "--image-opts", opts };
        Qemu.Io(io.ToArray());
        var convert = new List<string> { "convert" };
        convert.AddRange(secrets);
        convert.AddRange(new[] { "--image-opts", opts, "-O", "raw", expected });
        Qemu.Img(convert.ToArray());
        var bytes = File.ReadAllBytes(expected);
        Assert.Equal(0x11, bytes[100]);
        Assert.Equal(0x22, bytes[3 << 20]);

        using (Secrets.Use(Secrets.Pw, Secrets.Pw2))
        {
            using (var disk = ImageChain.Open(overlay))
                Assert.Equal(bytes, Images.ReadAll(disk));
            CommitImage.Run(overlay, new CommitOptions { KeepOverlays = true });
        }
        Secrets.AssertQemuCheckClean(baseImage, Secrets.Pw);
        Secrets.AssertQemuIdentical(baseImage, Secrets.Pw, expected);
    }

    [SkippableFact]
    public void OneLayersPassphraseIsNotEnoughForTheOther()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string baseImage = Secrets.CreateEncrypted(dir.File("base.qcow2"), Size, Secrets.Pw);
        string overlay = Secrets.CreateEncrypted(dir.File("overlay.qcow2"), Size, Secrets.Pw2, backing: baseImage);
        using (Secrets.Use(Secrets.Pw, Secrets.Pw2))
        using (var disk = ImageChain.Open(overlay, new OpenOptions { Writable = true }))
            disk.Write(4096, new byte[] { 1, 2, 3 }); // copy-on-write: the base's cluster read, the overlay's written
        using (Secrets.Use(Secrets.Pw2))
        {
            var e = Assert.Throws<VDiskException>(() => ImageChain.Open(overlay).Dispose());
            Assert.Equal(VDiskErrorKind.WrongPassphrase, e.Kind);
            Assert.Contains("base.qcow2", e.Message);
        }
        // qemu reads the chain the engine wrote, each layer with its own secret.
        var args = new List<string>(Secrets.Object("b", Secrets.Pw));
        args.AddRange(Secrets.Object("s", Secrets.Pw2));
        args.AddRange(new[] { "-c", "read -P 0 0 4096", "-c", "read -v 4096 3", "--image-opts",
            $"driver=qcow2,file.filename={overlay},encrypt.key-secret=s,backing.encrypt.key-secret=b" });
        var output = Qemu.Io(args.ToArray());
        Assert.Contains("00001000:  01 02 03", output);
    }
}
