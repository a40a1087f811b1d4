// LUKS-encrypted qcow2 both ways with QEMU 7.2: images qemu-img makes and qemu-io writes read back byte for byte
// through the engine, and images the engine makes and writes pass qemu-img check and compare identical to their
// plaintext; qcow2's legacy AES method reads back and is never opened writable.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Interop;

public class Qcow2EncryptionInteropTests
{
    private const long Size = 8L << 20;

    private static readonly string[] QemuWrites =
    {
        "write -P 0x11 0 1",
        "write -P 0x22 511 2",
        "write -P 0x33 4095 4098",
        "write -P 0x44 65535 131074",
        "write -P 0x55 2097151 3",
        "write -P 0x66 3M 1M",
        "write -z 3M 64k",
        "write -P 0x77 8388096 512",
    };

    // cipher-alg, cipher-mode, ivgen-alg, ivgen-hash-alg ("" for none), hash-alg
    public static TheoryData<string, string, string, string, string> Ciphers => new()
    {
        { "aes-256", "xts", "plain64", "", "sha256" },
        { "aes-128", "xts", "plain64", "", "sha1" },
        { "aes-192", "xts", "plain64", "", "sha512" },
        { "aes-256", "cbc", "essiv", "sha256", "sha512" },
        { "aes-128", "cbc", "essiv", "sha256", "sha1" },
        { "aes-128", "cbc", "plain", "", "sha256" },
    };

    [SkippableTheory]
    [MemberData(nameof(Ciphers))]
    public void ReadsWhatQemuWrote(string alg, string mode, string ivgen, string ivhash, string hash)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = dir.File("q.qcow2"), raw = dir.File("expected.raw");
        string options = $"encrypt.cipher-alg={alg},encrypt.cipher-mode={mode},encrypt.ivgen-alg={ivgen},encrypt.hash-alg={hash}"
            + (ivhash.Length > 0 ? $",encrypt.ivgen-hash-alg={ivhash}" : "");
        Secrets.QemuCreate(image, Size, Secrets.Pw, options);
        Secrets.QemuIo(image, Secrets.Pw, QemuWrites);
        Secrets.QemuToRaw(image, Secrets.Pw, raw);
        var expected = File.ReadAllBytes(raw);
        Assert.Equal(0x44, expected[65535 + 1000]); // the reference really holds the pattern

        using (Secrets.Use(Secrets.Pw))
        using (var disk = ImageChain.Open(image))
        {
            var ours = Images.ReadAll(disk);
            Assert.Equal(expected.Length, ours.Length);
            int first = ours.AsSpan().CommonPrefixLength(expected);
            Assert.True(first == ours.Length, $"first difference at byte {first}");
        }
        var info = VDisk.Engine.Operations.InspectImage.Run(image);
        Assert.Equal($"{alg}-{mode}-{ivgen}" + (ivhash.Length > 0 ? ":" + ivhash : ""), info.Details.Cipher);
    }

    public static TheoryData<string, int> Specs => new()
    {
        { "aes-256-xts-plain64/sha256", 65536 },
        { "aes-128-xts-plain64/sha1", 4096 },
        { "aes-256-cbc-essiv:sha256/sha512", 65536 },
        { "aes-192-xts-plain64/sha256", 512 },
    };

    [SkippableTheory]
    [MemberData(nameof(Specs))]
    public void QemuReadsWhatWeWrote(string specText, int clusterSize)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = dir.File("ours.qcow2"), plain = dir.File("plain.raw");
        Secrets.CreateEncrypted(image, Size, Secrets.Pw, Spec(specText), clusterSize);
        var mirror = new byte[Size];
        var random = new Random(clusterSize);
        using (Secrets.Use(Secrets.Pw))
        using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
        {
            for (int i = 0; i < 60; i++)
            {
                int length = random.Next(1, i % 7 == 0 ? 300_000 : 3000); // partial sectors, cluster-crossing runs
                long at = random.NextInt64(0, Size - length);
                var data = Images.Pattern(length, i);
                disk.Write(at, data);
                data.CopyTo(mirror.AsSpan((int)at));
            }
            disk.WriteZeroes(1 << 20, 70_000);
            Array.Clear(mirror, 1 << 20, 70_000);
            Assert.Equal(mirror, Images.ReadAll(disk));
        }
        // A marker at a known place, for qemu-io's pattern check.
        using (Secrets.Use(Secrets.Pw))
        using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
        {
            var marker = Enumerable.Repeat((byte)0x5a, 8192).ToArray();
            disk.Write(5 << 20, marker);
            marker.CopyTo(mirror, 5 << 20);
        }
        File.WriteAllBytes(plain, mirror);
        Secrets.AssertQemuCheckClean(image, Secrets.Pw);
        Secrets.AssertQemuIdentical(image, Secrets.Pw, plain);
        var output = Secrets.QemuIo(image, Secrets.Pw, $"read -P 0x5a {5 << 20} 8192");
        Assert.DoesNotContain("Pattern verification failed", output);
        Assert.Contains("read 8192/8192", output);
        // The guest's bytes are not in the file in clear.
        var file = File.ReadAllBytes(image);
        Assert.Equal(-1, file.AsSpan().IndexOf(marker8k()));
        static byte[] marker8k() => Enumerable.Repeat((byte)0x5a, 4096).ToArray();
    }

    [SkippableFact]
    public void QemuIoSeesAMismatchedPattern()
    {
        // The pattern check above can fail: a wrong pattern is reported by qemu-io.
        Qemu.Require();
        using var dir = new TempFolder();
        string image = Secrets.CreateEncrypted(dir.File("ours.qcow2"), Size);
        using (Secrets.Use(Secrets.Pw))
        using (var disk = ImageChain.Open(image, new OpenOptions { Writable = true }))
            disk.Write(0, Enumerable.Repeat((byte)0x5a, 4096).ToArray());
        var args = new List<string>(Secrets.Object("s", Secrets.Pw)) { "-c", "read -P 0x5b 0 4096", "--image-opts", Secrets.Opts(image) };
        var (code, output) = HostSetup.TryRun("qemu-io", args.ToArray());
        Assert.NotEqual(0, code);
        Assert.Contains("Pattern verification failed", output);
    }

    [Fact]
    public void RefusesAKeySizeQemuCannotOpen()
    {
        // QEMU 7.2 aborts on aes-192-cbc key material (96000 bytes, not whole sectors): such an image is never made.
        using var dir = new TempFolder();
        var e = Assert.Throws<VDiskException>(() => Secrets.CreateEncrypted(dir.File("x.qcow2"), Size, spec: Spec("aes-192-cbc-plain64/sha256")));
        Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        Assert.False(File.Exists(dir.File("x.qcow2")));
    }

    [SkippableFact]
    public void LegacyAesReadsBackAndIsReadOnly()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = dir.File("aes.qcow2"), raw = dir.File("expected.raw");
        var create = new List<string> { "create", "-q", "-f", "qcow2" };
        create.AddRange(Secrets.Object("s", Secrets.Pw));
        create.AddRange(new[] { "-o", "encrypt.format=aes,encrypt.key-secret=s", image, Size.ToString() });
        Qemu.Img(create.ToArray());
        Secrets.QemuIo(image, Secrets.Pw, QemuWrites);
        Secrets.QemuToRaw(image, Secrets.Pw, raw);
        var expected = File.ReadAllBytes(raw);
        Assert.Equal(0x66, expected[(3 << 20) + 70_000]);
        using (Secrets.Use(Secrets.Pw))
        {
            using (var disk = ImageChain.Open(image))
                Assert.Equal(expected, Images.ReadAll(disk));
            var e = Assert.Throws<VDiskException>(() => ImageChain.Open(image, new OpenOptions { Writable = true }).Dispose());
            Assert.Equal(VDiskErrorKind.ReadOnly, e.Kind);
        }
        var info = VDisk.Engine.Operations.InspectImage.Run(image);
        Assert.True(info.Details.Encrypted);
        Assert.Equal("aes", info.Details.EncryptionFormat);
    }

    internal static LuksCipherSpec Spec(string text)
    {
        // "aes-256-xts-plain64/sha256" or "aes-256-cbc-essiv:sha256/sha512"
        var (cipher, hash) = (text.Split('/')[0], text.Split('/')[1]);
        var parts = cipher.Split('-');
        string ivgen = parts[3], ivhash = "";
        if (ivgen.Contains(':')) (ivgen, ivhash) = (ivgen.Split(':')[0], ivgen.Split(':')[1]);
        return LuksCipherSpec.FromQemuOptions($"{parts[0]}-{parts[1]}", parts[2], ivgen, ivhash.Length > 0 ? ivhash : null, hash);
    }
}
