// Our LUKS1 code on its own: format/unlock round trips, the errors a caller acts on (no passphrase, wrong passphrase
// after every active slot, damaged slots, truncated or corrupted headers), key slot management rules, cipher spec
// validation, and key hygiene (keys zeroed on Dispose, no passphrase in any message).
using System.Security.Cryptography;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Tests.Crypto;

public class LuksVolumeTests
{
    internal static readonly TimeSpan Fast = TimeSpan.FromMilliseconds(1);

    internal static Passphrase P(string s) => Passphrase.FromChars(s);

    /// <summary>A volume (region + 64 KiB payload of 0x5a) with slot 0 = "first", slot 1 = "second".</summary>
    internal static MemoryStorage Volume(LuksCipherSpec? spec = null, bool second = true)
    {
        using var first = P("first");
        var region = Luks.Format(new LuksFormatOptions { Spec = spec ?? LuksCipherSpec.QemuDefault, IterTime = Fast }, first, out var cipher);
        var payload = new byte[64 * 1024];
        payload.AsSpan().Fill(0x5a);
        using (cipher) cipher.Encrypt(0, payload);
        var storage = new MemoryStorage("vol.luks", region.Concat(payload).ToArray());
        if (second)
        {
            using var s = P("second");
            Luks.AddKeySlot(storage, 0, new[] { first }, s, Fast, null, "vol.luks");
        }
        return storage;
    }

    internal static bool DecryptsPayload(IStorage storage, SectorCipher cipher)
    {
        var header = Luks.ReadHeader(storage, 0, "vol.luks");
        var data = new byte[64 * 1024];
        storage.ReadAt(header.RegionLength, data);
        cipher.Decrypt(0, data);
        return data.All(b => b == 0x5a);
    }

    private static VDiskException Fails(IStorage storage, params string[] passphrases)
    {
        var list = passphrases.Select(P).ToList();
        try { return Assert.Throws<VDiskException>(() => Luks.Unlock(storage, 0, list, "vol.luks").Dispose()); }
        finally { list.ForEach(p => p.Dispose()); }
    }

    private static bool Opens(IStorage storage, string passphrase)
    {
        using var p = P(passphrase);
        using var c = Luks.Unlock(storage, 0, new[] { p }, "vol.luks");
        return DecryptsPayload(storage, c);
    }

    [Fact]
    public void FormatLaysOutTheRegionAsQemuDoes()
    {
        var header = Luks.ReadHeader(Volume(second: false), 0, "vol.luks");
        // aes-256-xts: 64-byte keys, 256000 bytes of material in 258048-byte (63 × 4096) areas from 4096.
        Assert.Equal(Enumerable.Range(0, 8).Select(i => 4096L + i * 258048), header.Slots.Select(s => s.MaterialOffset));
        Assert.Equal(4096L + 8 * 258048, header.RegionLength);
        Assert.All(header.Slots, s => Assert.Equal(4000, s.Stripes));
        Assert.True(header.Slots[0].Iterations >= 1000 && header.MasterKeyDigestIterations >= 1000);
        Assert.Equal(36, header.Uuid.Length);
    }

    [Fact]
    public void EverySlotOpensAndDecryptsTheSamePayload()
    {
        var storage = Volume();
        Assert.True(Opens(storage, "first"));
        Assert.True(Opens(storage, "second"));
    }

    [Fact]
    public void ARegionInsideAnotherFileWorksAtItsOffset()
    {
        // As in a qcow2 file, where the header extension points at the region's cluster.
        const long at = 3 * 65536;
        var inner = Volume(second: false).ToArray();
        var bytes = new byte[at + inner.Length];
        inner.CopyTo(bytes, at);
        var storage = new MemoryStorage("vol.qcow2", bytes);
        using var first = P("first");
        using var other = P("other");
        Assert.Equal(1, Luks.AddKeySlot(storage, at, new[] { first }, other, Fast, null, "vol.qcow2"));
        var header = Luks.ReadHeader(storage, at, "vol.qcow2");
        using var cipher = Luks.Unlock(storage, at, new[] { other }, "vol.qcow2");
        var data = new byte[64 * 1024];
        storage.ReadAt(at + header.RegionLength, data);
        cipher.Decrypt(0, data);
        Assert.All(data, b => Assert.Equal(0x5a, b));
        Assert.Equal(VDiskErrorKind.Corrupt, Assert.Throws<VDiskException>(() => Luks.ReadHeader(storage, at + 512, "vol.qcow2")).Kind);
    }

    [Fact]
    public void NoPassphraseIsPassphraseRequired() =>
        Assert.Equal(VDiskErrorKind.PassphraseRequired, Fails(Volume(second: false)).Kind);

    [Fact]
    public void WrongPassphrasesTryEveryActiveSlotAndNeverShowThePassphrase()
    {
        var e = Fails(Volume(), "hunter2-secret", "letmein-secret");
        Assert.Equal(VDiskErrorKind.WrongPassphrase, e.Kind);
        Assert.Contains("tried 2 active key slots", e.Message);
        Assert.DoesNotContain("secret", e.Message);
        Assert.Equal("vol.luks", e.Path);
    }

    [Fact]
    public void ADamagedSlotFailsButAnotherSlotStillOpens()
    {
        var storage = Volume();
        var header = Luks.ReadHeader(storage, 0, "vol.luks");
        var chunk = new byte[64];
        storage.ReadAt(header.Slots[0].MaterialOffset + 1000, chunk);
        chunk[3] ^= 0x10;
        storage.WriteAt(header.Slots[0].MaterialOffset + 1000, chunk);
        Assert.Equal(VDiskErrorKind.WrongPassphrase, Fails(storage, "first").Kind);
        Assert.True(Opens(storage, "second"));
    }

    [Fact]
    public void TruncatedHeaderOrRegionIsCorrupt()
    {
        var full = Volume(second: false).ToArray();
        var header = Luks.ReadHeader(new MemoryStorage("vol.luks", full), 0, "vol.luks");
        foreach (int length in new[] { 0, 100, LuksHeader.Size - 1, LuksHeader.Size, 4096, (int)header.RegionLength - 1 })
        {
            var e = Fails(new MemoryStorage("vol.luks", full[..length]), "first");
            Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
            Assert.Contains("vol.luks", e.Message);
        }
        Assert.Equal(VDiskErrorKind.Corrupt, Assert.Throws<VDiskException>(() => LuksHeader.Parse(full.AsSpan(0, 591), "vol.luks")).Kind);
    }

    [Theory]
    [InlineData(0, "magic")]
    [InlineData(7, "version")]
    [InlineData(8 + 31, "cipher_name")]
    [InlineData(108 + 3, "key_bytes")]
    [InlineData(208 + 47, "stripes")]
    [InlineData(208 + 48 + 1, "state")]
    [InlineData(208 + 48 * 2 + 42, "overlaps")]
    public void DamagedHeaderFieldsAreCorruptNamingTheField(int offset, string field)
    {
        var bytes = Volume(second: false).ToArray();
        if (field == "cipher_name") bytes.AsSpan(8, 32).Fill((byte)'x'); // no NUL left in the field
        else bytes[offset] ^= 0x41;
        var e = Assert.Throws<VDiskException>(() => LuksHeader.Parse(bytes, "vol.luks"));
        Assert.Equal(VDiskErrorKind.Corrupt, e.Kind);
        Assert.Contains(field, e.Message);
        Assert.StartsWith("vol.luks", e.Message);
    }

    [Fact]
    public void RandomHeaderCorruptionOnlyEverThrowsVDiskException()
    {
        // A small key (16 bytes, sha1) keeps each unlock attempt cheap.
        var original = Volume(LuksCipherSpec.FromQemuOptions("aes-128", "cbc", "plain64", null, "sha1")).ToArray();
        var random = new Random(1234);
        using var first = P("first");
        int parsed = 0;
        for (int n = 0; n < 400; n++)
        {
            var bytes = (byte[])original.Clone();
            for (int k = random.Next(1, 5); k > 0; k--) bytes[random.Next(LuksHeader.Size)] = (byte)random.Next(256);
            var storage = new MemoryStorage("vol.luks", bytes);
            try
            {
                var header = Luks.ReadHeader(storage, 0, "vol.luks");
                parsed++;
                // Unlock too (every fourth case, for time), unless the damage asks for a lot of PBKDF2 work.
                if (n % 4 != 0 || header.MasterKeyDigestIterations > 20_000 || header.Slots.Any(s => s.Active && s.Iterations > 20_000)) continue;
                Luks.Unlock(storage, 0, new[] { first }, "vol.luks").Dispose();
            }
            catch (VDiskException e)
            {
                Assert.True(e.Kind is VDiskErrorKind.Corrupt or VDiskErrorKind.Unsupported or VDiskErrorKind.WrongPassphrase, $"{e.Kind}: {e.Message}");
            }
        }
        Assert.True(parsed > 0, "no mutation left a parseable header: the fuzz does not reach Unlock");
    }

    [Fact]
    public void HeaderWriteRoundTripsTheBytes()
    {
        var bytes = Volume().ToArray()[..LuksHeader.Size];
        var again = new byte[LuksHeader.Size];
        LuksHeader.Parse(bytes, "vol.luks").Write(again);
        Assert.Equal(bytes, again);
    }

    [Fact]
    public void AddKeySlotRules()
    {
        var storage = Volume();
        using var first = P("first");
        using var third = P("third");
        using var wrong = P("wrong");
        Assert.Equal(VDiskErrorKind.InvalidArgument, Assert.Throws<VDiskException>(() => Luks.AddKeySlot(storage, 0, new[] { first }, third, Fast, 1, "vol.luks")).Kind);
        Assert.Equal(VDiskErrorKind.InvalidArgument, Assert.Throws<VDiskException>(() => Luks.AddKeySlot(storage, 0, new[] { first }, third, Fast, 8, "vol.luks")).Kind);
        Assert.Equal(VDiskErrorKind.WrongPassphrase, Assert.Throws<VDiskException>(() => Luks.AddKeySlot(storage, 0, new[] { wrong }, third, Fast, null, "vol.luks")).Kind);
        Assert.Equal(VDiskErrorKind.PassphraseRequired, Assert.Throws<VDiskException>(() => Luks.AddKeySlot(storage, 0, Array.Empty<Passphrase>(), third, Fast, null, "vol.luks")).Kind);
        Assert.Equal(5, Luks.AddKeySlot(storage, 0, new[] { first }, third, Fast, 5, "vol.luks"));
        Assert.True(Opens(storage, "third"));
        for (int i = 0; i < 5; i++) Luks.AddKeySlot(storage, 0, new[] { first }, third, Fast, null, "vol.luks");
        Assert.All(Luks.ReadHeader(storage, 0, "vol.luks").Slots, s => Assert.True(s.Active));
        var full = Assert.Throws<VDiskException>(() => Luks.AddKeySlot(storage, 0, new[] { first }, third, Fast, null, "vol.luks"));
        Assert.Equal(VDiskErrorKind.InvalidArgument, full.Kind);
    }

    [Fact]
    public void RemoveKeySlotsRules()
    {
        var storage = Volume();
        using var first = P("first");
        using var second = P("second");
        using var wrong = P("wrong");
        Assert.Equal(VDiskErrorKind.WrongPassphrase, Assert.Throws<VDiskException>(() => Luks.RemoveKeySlots(storage, 0, new[] { first }, wrong, null, "vol.luks")).Kind);
        Assert.Equal(VDiskErrorKind.InvalidArgument, Assert.Throws<VDiskException>(() => Luks.RemoveKeySlots(storage, 0, new[] { first }, null, 3, "vol.luks")).Kind);
        Assert.Equal(VDiskErrorKind.InvalidArgument, Assert.Throws<VDiskException>(() => Luks.RemoveKeySlots(storage, 0, new[] { first }, null, null, "vol.luks")).Kind);
        Assert.Equal(VDiskErrorKind.WrongPassphrase, Assert.Throws<VDiskException>(() => Luks.RemoveKeySlots(storage, 0, new[] { first }, second, 0, "vol.luks")).Kind);
        // The same passphrase in two slots: removing it from both would leave "second" only, which is allowed.
        Luks.AddKeySlot(storage, 0, new[] { first }, first, Fast, null, "vol.luks");
        Assert.Equal(new[] { 0, 2 }, Luks.RemoveKeySlots(storage, 0, new[] { second }, first, null, "vol.luks"));
        Assert.Equal(VDiskErrorKind.WrongPassphrase, Fails(storage, "first").Kind);
        var header = Luks.ReadHeader(storage, 0, "vol.luks");
        Assert.Equal(new[] { false, true, false }, header.Slots.Take(3).Select(s => s.Active));
        Assert.Equal(0, header.Slots[0].Iterations);
        var last = Assert.Throws<VDiskException>(() => Luks.RemoveKeySlots(storage, 0, new[] { second }, null, 1, "vol.luks"));
        Assert.Equal(VDiskErrorKind.InvalidArgument, last.Kind);
        Assert.True(Opens(storage, "second"));
    }

    [Theory]
    [InlineData("aes-128", "cbc", "essiv", "sha1", "sha256", "sha1")]
    [InlineData("aes-256", "xts", "essiv", "sha512", "sha256", "sha512")]
    [InlineData("aes-192", "cbc", "plain64", null, "sha256", "aes-192")]
    [InlineData("twofish-256", "xts", "plain64", null, "sha256", "twofish-256")]
    [InlineData("aes-256", "ctr", "plain64", null, "sha256", "ctr")]
    [InlineData("aes-256", "xts", "benbi", null, "sha256", "benbi")]
    [InlineData("aes-256", "xts", "plain64", null, "md5", "md5")]
    public void UnsupportedCombinationsAreInvalidNamingThem(string alg, string mode, string ivgen, string? ivHash, string hash, string named)
    {
        var e = Assert.Throws<VDiskException>(() => LuksCipherSpec.FromQemuOptions(alg, mode, ivgen, ivHash, hash));
        Assert.Equal(VDiskErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void SpecNamesAndKeySizes()
    {
        Assert.Equal("aes-256-xts-plain64", LuksCipherSpec.QemuDefault.ToString());
        Assert.Equal(64, LuksCipherSpec.QemuDefault.KeyBytes);
        var essiv = LuksCipherSpec.FromQemuOptions("aes-128", "cbc", "essiv", null, "sha1");
        Assert.Equal("aes-128-cbc-essiv:sha256", essiv.ToString());
        Assert.Equal(16, essiv.KeyBytes);
        Assert.Equal(48, LuksCipherSpec.FromQemuOptions("aes-192", "xts", "plain", null, "sha384").KeyBytes);
    }

    [Fact]
    public void DisposeZeroesTheKeysAndLaterUseFails()
    {
        var spec = LuksCipherSpec.FromQemuOptions("aes-256", "cbc", "essiv", "sha256", "sha256");
        var key = RandomNumberGenerator.GetBytes(32);
        var cipher = SectorCipher.Create(spec, key);
        var keyBuffer = cipher.KeyBuffer;
        var essivBuffer = cipher.EssivKeyBuffer!;
        Assert.Equal(key, keyBuffer);
        Assert.Contains(essivBuffer, b => b != 0);
        var data = new byte[1024];
        Parallel.For(0, 4, _ => cipher.Encrypt(1, new byte[4096])); // workers on several threads
        cipher.Encrypt(0, data);
        cipher.Dispose();
        Assert.All(keyBuffer, b => Assert.Equal(0, b));
        Assert.All(essivBuffer, b => Assert.Equal(0, b));
        Assert.Throws<ObjectDisposedException>(() => cipher.Decrypt(0, data));
    }

    [Fact]
    public void NoPassphraseInToStrings()
    {
        using var p = P("s3cr3t-passphrase");
        var region = Luks.Format(new LuksFormatOptions { IterTime = Fast }, p, out var cipher);
        using (cipher)
        {
            var header = LuksHeader.Parse(region, "x");
            foreach (var text in new[] { p.ToString(), cipher.ToString(), cipher.Spec.ToString(), header.ToString(), new LuksFormatOptions().ToString() })
                Assert.DoesNotContain("s3cr3t", text);
        }
    }
}
