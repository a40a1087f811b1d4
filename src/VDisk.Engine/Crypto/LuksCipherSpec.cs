// A LUKS1 cipher specification: the header's cipher-name / cipher-mode / hash-spec strings (LUKS1 On-Disk Format
// Specification 1.2.3, section 2.4 "cipher-name", "cipher-mode", "hash-spec"), with the option names and checks of
// qemu-img's luks driver (crypto/block-luks.c: qcrypto_block_luks_create, qcrypto_block_luks_essiv_cipher).
// Only AES is implemented; modes xts, cbc and ecb; IV generators plain, plain64 and essiv:<hash>.
using VDisk.Engine.Core;

namespace VDisk.Engine.Crypto;

/// <summary>
/// How a LUKS volume encrypts: cipher (<c>aes</c>), key size in bits (of one AES key; XTS uses two), mode
/// (<c>xts</c>, <c>cbc</c>, <c>ecb</c>), IV generator (<c>plain</c>, <c>plain64</c>, <c>essiv</c>), the ESSIV hash,
/// and the hash of PBKDF2 and the anti-forensic splitter.
/// </summary>
public sealed record LuksCipherSpec(string Cipher, int KeyBits, string Mode, string IvGenerator, string? IvHash, string Hash)
{
    /// <summary>qemu-img's defaults: aes-256-xts-plain64 with sha256.</summary>
    public static LuksCipherSpec QemuDefault { get; } = new("aes", 256, "xts", "plain64", null, "sha256");

    /// <summary>
    /// Builds a spec from qemu-img's option values: <paramref name="cipherAlg"/> <c>aes-128|aes-192|aes-256</c>,
    /// <paramref name="cipherMode"/> <c>xts|cbc|ecb</c>, <paramref name="ivgenAlg"/> <c>plain|plain64|essiv</c>,
    /// <paramref name="ivgenHash"/> (essiv only; qemu's default sha256), <paramref name="hashAlg"/>
    /// <c>sha1|sha256|sha384|sha512</c>. An unsupported value or combination is <see cref="VDiskErrorKind.InvalidArgument"/>.
    /// </summary>
    public static LuksCipherSpec FromQemuOptions(string cipherAlg, string cipherMode, string ivgenAlg, string? ivgenHash, string hashAlg)
    {
        ArgumentNullException.ThrowIfNull(cipherAlg);
        string alg = cipherAlg.Trim().ToLowerInvariant();
        int bits = alg switch
        {
            "aes-128" => 128,
            "aes-192" => 192,
            "aes-256" => 256,
            _ => throw VDiskException.Invalid(null, $"LUKS cipher algorithm '{cipherAlg}' is not supported (aes-128, aes-192, aes-256)."),
        };
        string ivgen = (ivgenAlg ?? "plain64").Trim().ToLowerInvariant();
        string? ivHash = ivgen == "essiv" ? (string.IsNullOrWhiteSpace(ivgenHash) ? "sha256" : ivgenHash.Trim().ToLowerInvariant()) : null;
        var spec = new LuksCipherSpec("aes", bits, (cipherMode ?? "xts").Trim().ToLowerInvariant(), ivgen, ivHash,
            (hashAlg ?? "sha256").Trim().ToLowerInvariant());
        if ((spec.Problem() ?? spec.FormatProblem()) is { } problem) throw VDiskException.Invalid(null, problem);
        return spec;
    }

    /// <summary>
    /// Why a new volume should not use this spec although it can be read: key material whose size is no whole number of
    /// sectors (a 24-byte key × 4000 stripes outside XTS), which qemu 7.2 aborts on (crypto/block.c asserts sector-aligned
    /// lengths). Null when fine.
    /// </summary>
    internal string? FormatProblem() =>
        KeyBytes * 4000 % 512 != 0
            ? $"LUKS {this} would need key material of {KeyBytes * 4000} bytes, not a whole number of 512-byte sectors, which QEMU cannot open (use aes-192 only with xts)."
            : null;

    /// <summary>Bytes of the master key: KeyBits/8, twice that for XTS (two AES keys).</summary>
    public int KeyBytes => Mode == "xts" ? 2 * (KeyBits / 8) : KeyBits / 8;

    /// <summary>The LUKS header's cipher-mode string, e.g. <c>xts-plain64</c> or <c>cbc-essiv:sha256</c>.</summary>
    public string HeaderMode => IvHash is null ? $"{Mode}-{IvGenerator}" : $"{Mode}-{IvGenerator}:{IvHash}";

    /// <summary>Like cryptsetup's notation with the key size: <c>aes-256-xts-plain64</c>, <c>aes-128-cbc-essiv:sha256</c>.</summary>
    public override string ToString() => $"{Cipher}-{KeyBits}-{HeaderMode}";

    /// <summary>What is unsupported about this spec, or null when it can be used.</summary>
    internal string? Problem()
    {
        if (Cipher != "aes") return $"LUKS cipher '{Cipher}' is not supported (only aes).";
        if (KeyBits is not (128 or 192 or 256)) return $"LUKS cipher aes with a {KeyBits}-bit key is not supported (128, 192, 256).";
        if (Mode is not ("xts" or "cbc" or "ecb")) return $"LUKS cipher mode '{Mode}' is not supported (xts, cbc, ecb).";
        if (Pbkdf.HashSize(Hash) is null) return $"LUKS hash '{Hash}' is not supported (sha1, sha256, sha384, sha512).";
        switch (IvGenerator)
        {
            case "plain" or "plain64":
                if (IvHash is not null) return $"LUKS IV generator '{IvGenerator}' takes no hash (got '{IvHash}').";
                break;
            case "essiv":
                if (IvHash is null) return "LUKS IV generator essiv needs a hash.";
                int? size = EssivHashSize(IvHash);
                if (size is null) return $"LUKS essiv hash '{IvHash}' is not supported (md5, sha1, sha256, sha384, sha512).";
                if (size is not (16 or 24 or 32))
                    return $"LUKS essiv hash '{IvHash}' gives a {size}-byte key, and no AES cipher has that key size (qemu refuses it too): use sha256 or md5.";
                break;
            default:
                return $"LUKS IV generator '{IvGenerator}' is not supported (plain, plain64, essiv).";
        }
        return null;
    }

    /// <summary>Digest size of an ESSIV hash name, or null when unknown.</summary>
    internal static int? EssivHashSize(string name) => name switch
    {
        "md5" => 16,
        "sha1" => 20,
        "sha256" => 32,
        "sha384" => 48,
        "sha512" => 64,
        _ => null,
    };
}
