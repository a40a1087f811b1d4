// Known-answer tests of the primitives under LUKS: XTS-AES against IEEE 1619-2007 Annex B (vectors 1, 2, 3, 4 and
// 10, as also carried by Linux's crypto/testmgr.h aes_xts_tv_template) and NIST CAVP XTSGenAES128 (count 1, an
// arbitrary 128-bit tweak); PBKDF2-HMAC-SHA1 against RFC 6070 and PBKDF2-HMAC-SHA256 against RFC 7914 section 11.
using System.Security.Cryptography;
using System.Text;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;

namespace VDisk.Engine.Tests.Crypto;

public class CipherVectorTests
{
    private static byte[] Hex(string hex) => Convert.FromHexString(string.Concat(hex.Where(Uri.IsHexDigit)));

    private static readonly LuksCipherSpec Xts128 = new("aes", 128, "xts", "plain64", null, "sha256");
    private static readonly LuksCipherSpec Xts256 = new("aes", 256, "xts", "plain64", null, "sha256");

    private static byte[] Sequence512() => Enumerable.Range(0, 512).Select(i => (byte)i).ToArray();

    private static void AssertXts(LuksCipherSpec spec, string key, long sector, byte[] plain, string expected)
    {
        using var cipher = SectorCipher.Create(spec, Hex(key));
        var data = (byte[])plain.Clone();
        cipher.TransformUnits(sector, data, encrypt: true);
        Assert.Equal(Convert.ToHexString(Hex(expected)), Convert.ToHexString(data));
        cipher.TransformUnits(sector, data, encrypt: false);
        Assert.Equal(plain, data);
    }

    [Fact]
    public void Xts128Vector1AllZero() => AssertXts(Xts128, new string('0', 64), 0, new byte[32],
        "917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e");

    [Fact]
    public void Xts128Vector2() => AssertXts(Xts128, "11111111111111111111111111111111 22222222222222222222222222222222", 0x3333333333,
        Enumerable.Repeat((byte)0x44, 32).ToArray(), "c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0");

    [Fact]
    public void Xts128Vector3() => AssertXts(Xts128, "fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0 22222222222222222222222222222222", 0x3333333333,
        Enumerable.Repeat((byte)0x44, 32).ToArray(), "af85336b597afc1a900b2eb21ec949d292df4c047e0b21532186a5971a227a89");

    [Fact]
    public void Xts128Vector4With512ByteDataUnit() => AssertXts(Xts128, "27182818284590452353602874713526 31415926535897932384626433832795", 0,
        Sequence512(), @"
        27a7479befa1d476 489f308cd4cfa6e2 a96e4bbe3208ff25 287dd3819616e89c c78cf7f5e543445f 8333d8fa7f560000
        05279fa5d8b5e4ad 40e736ddb4d35412 328063fd2aab53e5 ea1e0a9f332500a5 df9487d07a5c92cc 512c8866c7e860ce
        93fdf166a24912b4 22976146ae20ce84 6bb7dc9ba94a767a aef20c0d61ad0265 5ea92dc4c4e41a89 52c651d33174be51
        a10c421110e6d815 88ede82103a252d8 a750e8768defffed 9122810aaeb99f91 72af82b604dc4b8e 51bcb08235a6f434
        1332e4ca60482a4b a1a03b3e65008fc5 da76b70bf1690db4 eae29c5f1badd03c 5ccf2a55d705ddcd 86d449511ceb7ec3
        0bf12b1fa35b913f 9f747a8afd1b130e 94bff94effd01a91 735ca1726acd0b19 7c4e5b03393697e1 26826fb6bbde8ecc
        1e08298516e2c9ed 03ff3c1b7860f6de 76d4cecd94c81198 55ef5297ca67e9f3 e7ff72b1e99785ca 0a7e7720c5b36dc6
        d72cac9574c8cbbc 2f801e23e56fd344 b07f22154beba0f0 8ce8891e643ed995 c94d9a69c9f1b5f4 99027a78572aeebd
        74d20cc39881c213 ee770b1010e4bea7 18846977ae119f7a 023ab58cca0ad752 afe656bb3c17256a 9f6e9bf19fdd5a38
        fc82bbe872c5539e db609ef4f79c203e bb140f2e583cb2ad 15b4aa5b655016a8 449277dbd477ef2c 8d6c017db738b18d
        eb4a427d1923ce3f f262735779a418f2 0a282df920147bea be421ee5319d0568");

    [Fact]
    public void Xts256Vector10With512ByteDataUnit() => AssertXts(Xts256,
        "2718281828459045235360287471352662497757247093699959574966967627 3141592653589793238462643383279502884197169399375105820974944592",
        0xff, Sequence512(), @"
        1c3b3a102f770386 e4836c99e370cf9b ea00803f5e482357 a4ae12d414a3e63b 5d31e276f8fe4a8d 66b317f9ac683f44
        680a86ac35adfc33 45befecb4bb188fd 5776926c49a3095e b108fd1098baec70 aaa66999a72a82f2 7d848b21d4a741b0
        c5cd4d5fff9dac89 aeba122961d03a75 7123e9870f8acf10 00020887891429ca 2a3e7a7d7df7b103 55165c8b9a6d0a7d
        e8b062c4500dc4cd 120c0f7418dae3d0 b5781c34803fa754 21c790dfe1de1834 f280d7667b327f6c 8cd7557e12ac3a0f
        93ec05c52e0493ef 31a12d3d9260f79a 289d6a379bc70c50 841473d1a8cc81ec 583e9645e07b8d96 70655ba5bbcfecc6
        dc3966380ad8fecb 17b6ba02469a020a 84e18e8f84252070 c13e9f1f289be54f bc481457778f6160 15e1327a02b140f1
        505eb309326d6837 8f8374595c849d84 f4c333ec44238851 43cb47bd71c5edae 9be69a2ffeceb1be c9de244fbe15992b
        11b77c040f12bd8f 6a975a44a0f90c29 a9abc3d4d8939272 84c58754cce29452 9f8614dcd2aba991 925fedc4ae74ffac
        6e333b93eb4aff04 79da9a410e4450e0 dd7ae4c6e2910900 575da401fc07059f 645e8b7e9bfdef33 943054ff84011493
        c27b3429eaedb4ed 5376441a77ed4385 1ad77f16f541dfd2 69d50d6a5f14fb0a ab1cbb4c1550be97 f7ab4066193c4caa
        773dad38014bd209 2fa755c824bb5e54 c4f36ffda9fcea70 b9c6e693e148c151");

    [Fact]
    public void Xts128CavpArbitraryTweak()
    {
        using var cipher = SectorCipher.Create(Xts128, Hex("a1b90cba3f06ac353b2c343876081762 090923026e91771815f29dab01932f2f"));
        var data = Hex("ebabce95b14d3c8d6fb350390790311c");
        cipher.TransformWithIv(Hex("4faef7117cda59c66e4b92013e768ad5"), data, encrypt: true);
        Assert.Equal("778AE8B43CB98D5A825081D5BE471C63", Convert.ToHexString(data));
    }

    [Fact]
    public void ManySectorsInOneCallEqualOneSectorAtATime()
    {
        // The batched path (tweaks of many sectors in one ECB call, several 64 KiB chunks) against per-sector calls.
        foreach (var spec in new[] { Xts256, new LuksCipherSpec("aes", 128, "cbc", "essiv", "sha256", "sha1"),
                     new LuksCipherSpec("aes", 192, "cbc", "plain", null, "sha256"), new LuksCipherSpec("aes", 256, "ecb", "plain64", null, "sha256") })
        {
            var key = RandomNumberGenerator.GetBytes(spec.KeyBytes);
            using var cipher = SectorCipher.Create(spec, key);
            var plain = RandomNumberGenerator.GetBytes(300 * 512);
            var batched = (byte[])plain.Clone();
            cipher.Encrypt(0xFFFF_FFF0, batched);
            var single = (byte[])plain.Clone();
            for (int s = 0; s < 300; s++) cipher.Encrypt(0xFFFF_FFF0 + s, single.AsSpan(s * 512, 512));
            Assert.Equal(single, batched);
            Assert.NotEqual(plain, batched);
            cipher.Decrypt(0xFFFF_FFF0, batched);
            Assert.Equal(plain, batched);
        }
    }

    [Fact]
    public void ConcurrentUseFromManyThreadsGivesTheSequentialResult()
    {
        var spec = new LuksCipherSpec("aes", 256, "xts", "essiv", "sha256", "sha256");
        using var cipher = SectorCipher.Create(spec, RandomNumberGenerator.GetBytes(spec.KeyBytes));
        var inputs = Enumerable.Range(0, 64).Select(i => RandomNumberGenerator.GetBytes(512 * (1 + i % 9))).ToArray();
        var expected = inputs.Select((b, i) => { var c = (byte[])b.Clone(); cipher.Encrypt(i * 1000, c); return c; }).ToArray();
        var actual = inputs.Select(b => (byte[])b.Clone()).ToArray();
        Parallel.For(0, 64, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            for (int r = 0; r < 20; r++) { cipher.Encrypt(i * 1000, actual[i]); cipher.Decrypt(i * 1000, actual[i]); }
            cipher.Encrypt(i * 1000, actual[i]);
        });
        for (int i = 0; i < 64; i++) Assert.Equal(expected[i], actual[i]);
    }

    [Fact]
    public void CbcPlain64MatchesDotNetCbcWithTheSectorAsIv()
    {
        var key = RandomNumberGenerator.GetBytes(32);
        using var cipher = SectorCipher.Create(new LuksCipherSpec("aes", 256, "cbc", "plain64", null, "sha256"), key);
        var plain = RandomNumberGenerator.GetBytes(1024);
        var data = (byte[])plain.Clone();
        cipher.Encrypt(0x0102030405, data);
        using var aes = Aes.Create();
        aes.Key = key;
        var iv = new byte[16];
        BitConverter.GetBytes(0x0102030406L).CopyTo(iv, 0); // second sector
        Assert.Equal(aes.EncryptCbc(plain.AsSpan(512, 512), iv, PaddingMode.None), data[512..]);
    }

    [Fact]
    public void LegacyQcowKeyIsThePassphraseZeroPaddedTo16()
    {
        using var pass = Passphrase.FromChars("secret");
        using var legacy = SectorCipher.LegacyQcowAes(pass);
        var key = new byte[16];
        "secret"u8.CopyTo(key);
        using var reference = SectorCipher.Create(new LuksCipherSpec("aes", 128, "cbc", "plain64", null, "sha256"), key);
        var a = RandomNumberGenerator.GetBytes(2048);
        var b = (byte[])a.Clone();
        legacy.Encrypt(7, a);
        reference.Encrypt(7, b);
        Assert.Equal(b, a);
        using var longPass = Passphrase.FromChars("0123456789abcdefTRUNCATED");
        using var truncated = SectorCipher.LegacyQcowAes(longPass);
        Assert.Equal("0123456789abcdef"u8.ToArray(), truncated.KeyBuffer);
    }

    [Theory]
    [InlineData("password", "salt", 1, 20, "0c60c80f961f0e71f3a9b524af6012062fe037a6")]
    [InlineData("password", "salt", 2, 20, "ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957")]
    [InlineData("password", "salt", 4096, 20, "4b007901b765489abead49d926f721d065a429c1")]
    [InlineData("passwordPASSWORDpassword", "saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096, 25, "3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038")]
    [InlineData("pass\0word", "sa\0lt", 4096, 16, "56fa6aa75548099dcc37d7f03425e0c3")]
    public void Pbkdf2Sha1Rfc6070(string password, string salt, int iterations, int length, string expected)
    {
        var output = new byte[length];
        Pbkdf.Derive("sha1", Encoding.ASCII.GetBytes(password), Encoding.ASCII.GetBytes(salt), iterations, output, null);
        Assert.Equal(expected, Convert.ToHexString(output).ToLowerInvariant());
    }

    [Fact]
    public void Pbkdf2Sha256Rfc7914()
    {
        var output = new byte[64];
        Pbkdf.Derive("sha256", "passwd"u8, "salt"u8, 1, output, null);
        Assert.Equal(Hex("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"), output);
    }

    [Fact]
    public void UnknownHashIsUnsupportedNamingIt()
    {
        var e = Assert.Throws<VDiskException>(() => Pbkdf.Derive("whirlpool", "a"u8, "b"u8, 1, new byte[8], "x.luks"));
        Assert.Equal(VDiskErrorKind.Unsupported, e.Kind);
        Assert.Contains("whirlpool", e.Message);
    }

    [Fact]
    public void AfSplitMergesBackAndDependsOnEveryStripe()
    {
        var key = RandomNumberGenerator.GetBytes(64);
        var material = new byte[64 * 4000];
        AfSplitter.Split("sha512", key, 4000, material);
        var merged = new byte[64];
        AfSplitter.Merge("sha512", material, 4000, merged);
        Assert.Equal(key, merged);
        material[123 * 64 + 5] ^= 1;
        AfSplitter.Merge("sha512", material, 4000, merged);
        Assert.NotEqual(key, merged);
    }
}
