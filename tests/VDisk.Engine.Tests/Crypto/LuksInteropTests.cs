// LUKS1 interop with QEMU 7.2's raw "luks" driver, the reference for our LUKS code alone: volumes qemu-img makes (a
// sample of ciphers, modes, IV generators and hashes) open with our Unlock and decrypt to what qemu-io wrote; volumes
// we make compare identical through qemu's luks driver and list our slots in qemu-img info; key slots added by
// qemu-img amend open with our code, and slots we add or remove behave so in qemu. In QEMU's luks format the payload
// starts at payload_offset × 512 and IV sectors count from there.
using System.Text.Json;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Crypto;

public class LuksInteropTests
{
    private const string Pass = "correct horse battery staple";

    private static string Secret(string id, string data) => $"secret,id={id},data={data}";
    private static string Opts(string file, string secret = "s") => $"driver=luks,key-secret={secret},file.filename={file}";

    // qemu-img create/amend calibrate PBKDF2 with the thread CPU clock and may give up on a loaded machine; Qemu retries
    // that, and this retries a little more, since the matrix runs several in parallel.
    private static void QemuImgCalibrating(params string[] args)
    {
        for (int attempt = 1; ; attempt++)
        {
            var (code, output) = Qemu.TryImg(args);
            if (code == 0) return;
            if (attempt == 4 || !output.Contains("Unable to get accurate CPU usage", StringComparison.Ordinal))
                throw new InvalidOperationException($"qemu-img {string.Join(' ', args)} exited {code}: {output}");
        }
    }

    private static Passphrase P(string s) => Passphrase.FromChars(s);

    // A sample of the option space (aes-192 only with xts: qemu 7.2 aborts on aes-192-cbc, whose key material is no
    // whole number of sectors); qemu's default aes-256-xts-plain64/sha256 is made by qemu-img amend in the slot test.
    public static readonly (string Alg, string Mode, string Ivgen, string? IvHash, string Hash, string Expected)[] Matrix =
    [
        ("aes-128", "xts", "plain64", null, "sha1", "aes-128-xts-plain64"),
        ("aes-192", "xts", "essiv", "sha256", "sha512", "aes-192-xts-essiv:sha256"),
        ("aes-128", "cbc", "essiv", "sha256", "sha1", "aes-128-cbc-essiv:sha256"),
        ("aes-256", "cbc", "plain", null, "sha512", "aes-256-cbc-plain"),
        ("aes-256", "ecb", "plain64", null, "sha256", "aes-256-ecb-plain64"),
    ];

    [SkippableFact]
    public void VolumesQemuMakesUnlockAndDecryptToWhatQemuWrote()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var files = Matrix.Select((m, i) => dir.File($"q{i}.luks")).ToArray();
        Parallel.For(0, Matrix.Length, new ParallelOptions { MaxDegreeOfParallelism = 3 }, i =>
        {
            var m = Matrix[i];
            string o = $"key-secret=s,cipher-alg={m.Alg},cipher-mode={m.Mode},ivgen-alg={m.Ivgen},hash-alg={m.Hash},iter-time=10"
                + (m.IvHash is null ? "" : $",ivgen-hash-alg={m.IvHash}");
            QemuImgCalibrating("create", "-q", "-f", "luks", "--object", Secret("s", Pass), "-o", o, files[i], "4M");
            Qemu.Io("--object", Secret("s", Pass), "--image-opts", Opts(files[i]), "-c", "write -P 0x5a 0 64k", "-c", "write -P 0xa5 1M 8k",
                "-c", "write -P 0x3c 4095k 1k");
        });
        for (int i = 0; i < Matrix.Length; i++)
        {
            var storage = new MemoryStorage(files[i], File.ReadAllBytes(files[i]));
            var header = Luks.ReadHeader(storage, 0, files[i]);
            Assert.Equal(Matrix[i].Expected, header.Spec.ToString());
            Assert.Equal(Matrix[i].Hash, header.Spec.Hash);
            Assert.Equal(new[] { true, false, false, false, false, false, false, false }, header.Slots.Select(s => s.Active));
            var rewritten = new byte[LuksHeader.Size];
            header.Write(rewritten);
            Assert.Equal(storage.ToArray()[..LuksHeader.Size], rewritten); // every field of qemu's header kept
            using var wrong = P("not it");
            using var right = P(Pass);
            using var cipher = Luks.Unlock(storage, 0, new[] { wrong, right }, files[i]);
            AssertPayload(storage, header.RegionLength, cipher, 0, 64 * 1024, 0x5a, Matrix[i].Expected);
            AssertPayload(storage, header.RegionLength, cipher, 1 << 20, 8 * 1024, 0xa5, Matrix[i].Expected);
            AssertPayload(storage, header.RegionLength, cipher, 4095 * 1024, 1024, 0x3c, Matrix[i].Expected);
        }
    }

    private static void AssertPayload(IStorage storage, long payload, SectorCipher cipher, long offset, int length, byte pattern, string what)
    {
        var data = new byte[length];
        storage.ReadAt(payload + offset, data);
        cipher.Decrypt(offset / 512, data);
        Assert.True(data.All(b => b == pattern), $"{what}: {length} bytes at {offset} do not decrypt to 0x{pattern:x2}");
    }

    /// <summary>A volume of ours: the region, then <paramref name="plain"/> encrypted from sector 0.</summary>
    private static void WriteOurs(string file, LuksCipherSpec spec, string passphrase, byte[] plain)
    {
        using var p = P(passphrase);
        var region = Luks.Format(new LuksFormatOptions { Spec = spec, IterTime = TimeSpan.FromMilliseconds(1) }, p, out var cipher);
        using (cipher)
        {
            var payload = (byte[])plain.Clone();
            cipher.Encrypt(0, payload);
            File.WriteAllBytes(file, region.Concat(payload).ToArray());
        }
    }

    [SkippableTheory]
    [InlineData("aes-256", "xts", "plain64", null, "sha256")]
    [InlineData("aes-128", "cbc", "essiv", "sha256", "sha1")]
    [InlineData("aes-192", "xts", "plain", null, "sha512")]
    public void VolumesWeMakeReadIdenticalInQemu(string alg, string mode, string ivgen, string? ivHash, string hash)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var spec = LuksCipherSpec.FromQemuOptions(alg, mode, ivgen, ivHash, hash);
        var plain = new byte[2 << 20];
        new Random(7).NextBytes(plain.AsSpan(0, 1 << 20));
        plain.AsSpan((1 << 20) + 4096, 70000).Fill(0x77);
        string ours = dir.File("ours.luks"), raw = dir.File("plain.raw");
        WriteOurs(ours, spec, Pass, plain);
        File.WriteAllBytes(raw, plain);
        Qemu.AssertIdentical(Opts(ours), $"driver=raw,file.filename={raw}", "--object", Secret("s", Pass), "--image-opts");

        var info = Qemu.Info(ours);
        var data = info.GetProperty("format-specific").GetProperty("data");
        Assert.Equal(alg, data.GetProperty("cipher-alg").GetString());
        Assert.Equal(mode, data.GetProperty("cipher-mode").GetString());
        Assert.Equal(ivgen, data.GetProperty("ivgen-alg").GetString());
        Assert.Equal(hash, data.GetProperty("hash-alg").GetString());
        var slots = data.GetProperty("slots").EnumerateArray().ToArray();
        Assert.Equal(8, slots.Length);
        Assert.True(slots[0].GetProperty("active").GetBoolean());
        Assert.Equal(4096, slots[0].GetProperty("key-offset").GetInt64());
        Assert.True(slots[0].GetProperty("iters").GetInt64() >= 1000);
        Assert.All(slots.Skip(1), s => Assert.False(s.GetProperty("active").GetBoolean()));
        using var p = P(Pass);
        var header = Luks.ReadHeader(new MemoryStorage(ours, File.ReadAllBytes(ours)), 0, ours);
        Assert.Equal(header.RegionLength, data.GetProperty("payload-offset").GetInt64());
        Assert.Equal(plain.Length, info.GetProperty("virtual-size").GetInt64());
    }

    [SkippableFact]
    public void KeySlotsAddedAndRemovedOnEitherSideWorkOnTheOther()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string ours = dir.File("ours.luks");
        var plain = new byte[1 << 20];
        plain.AsSpan().Fill(0x42);
        WriteOurs(ours, LuksCipherSpec.QemuDefault, Pass, plain);

        // qemu-img amend adds a slot to our volume: it opens with our code.
        QemuImgCalibrating("amend", "--object", Secret("s", Pass), "--object", Secret("s2", "from-qemu"), "--image-opts", Opts(ours),
            "-o", "state=active,new-secret=s2,iter-time=10");
        using var fromQemu = P("from-qemu");
        using var original = P(Pass);
        using var ours3 = P("from-us");
        var storage = new MemoryStorage(ours, File.ReadAllBytes(ours));
        Assert.Equal(new[] { true, true }, Luks.ReadHeader(storage, 0, ours).Slots.Take(2).Select(s => s.Active));
        using (var c = Luks.Unlock(storage, 0, new[] { fromQemu }, ours)) AssertPayload(storage, Luks.ReadHeader(storage, 0, ours).RegionLength, c, 0, 4096, 0x42, "qemu's slot");

        // A slot we add opens in qemu; so does the original after we remove qemu's slot, and qemu's no longer does.
        Assert.Equal(2, Luks.AddKeySlot(storage, 0, new[] { original }, ours3, TimeSpan.FromMilliseconds(1), null, ours));
        Assert.Equal(new[] { 1 }, Luks.RemoveKeySlots(storage, 0, new[] { original }, fromQemu, null, ours));
        File.WriteAllBytes(ours, storage.ToArray());
        var readBack = Qemu.Io("--object", Secret("s", "from-us"), "--image-opts", Opts(ours), "-c", "read -P 0x42 0 1M");
        Assert.Contains("read 1048576/1048576", readBack);
        Assert.DoesNotContain("fail", readBack, StringComparison.OrdinalIgnoreCase);
        var (code, output) = HostSetup.TryRun("qemu-io", "--object", Secret("s", "from-qemu"), "--image-opts", Opts(ours), "-c", "read 0 4k");
        Assert.NotEqual(0, code);
        Assert.Contains("Invalid password", output, StringComparison.OrdinalIgnoreCase);
        var slots = Qemu.Info(ours).GetProperty("format-specific").GetProperty("data").GetProperty("slots").EnumerateArray()
            .Select(s => s.GetProperty("active").GetBoolean()).ToArray();
        Assert.Equal(new[] { true, false, true, false, false, false, false, false }, slots);
        Qemu.Io("--object", Secret("s", Pass), "--image-opts", Opts(ours), "-c", "read -P 0x42 0 4k");
    }
}
