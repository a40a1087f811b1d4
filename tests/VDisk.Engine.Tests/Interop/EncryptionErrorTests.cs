// Encrypted images that cannot be opened: a wrong or missing passphrase, a damaged LUKS area or header extension,
// and compression asked together with encryption. Each is a clear error, and Convert leaves no output behind.
using System.Buffers.Binary;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class EncryptionErrorTests
{
    private const long Size = 4L << 20;

    [Fact]
    public void WrongPassphraseTriesEverySlotAndConvertLeavesNoOutput()
    {
        using var dir = new TempFolder();
        string image = Secrets.CreateEncrypted(dir.File("e.qcow2"), Size);
        using (Secrets.Use(Secrets.Pw))
        using (var added = Secrets.Key("third one"))
            KeySlotImage.Add(image, added, Secrets.Fast);
        using (Secrets.Use(Secrets.Pw2))
        {
            var e = Assert.Throws<VDiskException>(() => ImageChain.Open(image).Dispose());
            Assert.Equal(VDiskErrorKind.WrongPassphrase, e.Kind);
            Assert.Contains("tried 2 active key slots", e.Message);
            Assert.DoesNotContain(Secrets.Pw2, e.Message);
            string output = dir.File("out.raw");
            var c = Assert.Throws<VDiskException>(() => ConvertImage.Run(image, output, new ConvertOptions { DestinationFormat = ImageFormat.Raw }));
            Assert.Equal(VDiskErrorKind.WrongPassphrase, c.Kind);
            Assert.Equal(new[] { "e.qcow2" }, Directory.GetFiles(dir.Path).Select(Path.GetFileName));
        }
        using (Secrets.Use("third one"))
        using (var disk = ImageChain.Open(image))
            Assert.Equal(new byte[512], Read(disk, 0, 512));
    }

    [Fact]
    public void NoPassphraseInspectsButCannotReadOrWrite()
    {
        using var dir = new TempFolder();
        string image = Secrets.CreateEncrypted(dir.File("e.qcow2"), Size);
        using (Secrets.Use(Secrets.Pw))
        using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
            disk.Write(0, new byte[] { 9 });
        var info = InspectImage.Run(image);
        Assert.True(info.Details.Encrypted);
        Assert.Equal("luks", info.Details.EncryptionFormat);
        Assert.Equal("aes-256-xts-plain64", info.Details.Cipher);
        Assert.Equal(new[] { 0 }, info.Details.ActiveKeySlots);
        using (var disk = ImageChain.Open(image))
            Assert.Equal(VDiskErrorKind.PassphraseRequired, Assert.Throws<VDiskException>(() => Read(disk, 0, 512)).Kind);
        using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
            Assert.Equal(VDiskErrorKind.PassphraseRequired, Assert.Throws<VDiskException>(() => disk.Write(1 << 20, new byte[512])).Kind);
        var c = Assert.Throws<VDiskException>(() => ConvertImage.Run(image, dir.File("out.raw"), new ConvertOptions { DestinationFormat = ImageFormat.Raw }));
        Assert.Equal(VDiskErrorKind.PassphraseRequired, c.Kind);
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void TruncatedLuksAreaIsCorruptNamingTheFile()
    {
        using var dir = new TempFolder();
        string image = Secrets.CreateEncrypted(dir.File("e.qcow2"), Size);
        var (offset, _) = FdePointer(image);
        using (var f = File.OpenWrite(image)) f.SetLength(offset + 4096); // the header stays, the key material is cut
        using (Secrets.Use(Secrets.Pw))
        {
            var e = Assert.Throws<VDiskException>(() => ImageChain.Open(image).Dispose());
            Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
            Assert.Contains(image, e.Message);
        }
    }

    [Theory]
    [InlineData(12345L)] // not cluster aligned
    [InlineData(1L << 40)] // past the end of the file
    public void DamagedEncryptionExtensionIsCorrupt(long badOffset)
    {
        using var dir = new TempFolder();
        string image = Secrets.CreateEncrypted(dir.File("e.qcow2"), Size);
        var (_, at) = FdePointer(image);
        var bytes = File.ReadAllBytes(image);
        BinaryPrimitives.WriteUInt64BigEndian(bytes.AsSpan((int)at), (ulong)badOffset);
        File.WriteAllBytes(image, bytes);
        var e = Assert.Throws<VDiskException>(() => InspectImage.Run(image));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains(image, e.Message);
    }

    [Fact]
    public void CompressionWithEncryptionIsRefused()
    {
        using var dir = new TempFolder();
        string source = dir.File("s.raw");
        File.WriteAllBytes(source, new byte[1 << 20]);
        using var key = Secrets.Key(Secrets.Pw);
        var e = Assert.Throws<VDiskException>(() => ConvertImage.Run(source, dir.File("o.qcow2"), new ConvertOptions
        {
            Compress = true,
            Encryption = new LuksFormatOptions { IterTime = Secrets.Fast },
            Passphrase = key,
        }));
        Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        Assert.False(File.Exists(dir.File("o.qcow2")));
        string image = Secrets.CreateEncrypted(dir.File("e.qcow2"), Size);
        using (Secrets.Use(Secrets.Pw))
        using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
            Assert.Equal(VDiskErrorKind.Unsupported, Assert.Throws<VDiskException>(() => disk.WriteCompressed(0, new byte[65536])).Kind);
    }

    internal static byte[] Read(VirtualDisk disk, long offset, int length)
    {
        var b = new byte[length];
        disk.Read(offset, b);
        return b;
    }

    /// <summary>The LUKS offset the full disk encryption header extension holds, and where in the file that field is.</summary>
    internal static (long Offset, long FieldAt) FdePointer(string image)
    {
        var b = File.ReadAllBytes(image);
        int at = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(100)); // header_length (v3)
        while (true)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(at));
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(at + 4));
            Assert.NotEqual(0u, type);
            if (type == 0x0537be77) return ((long)BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(at + 8)), at + 8);
            at += 8 + (length + 7) / 8 * 8;
        }
    }
}
