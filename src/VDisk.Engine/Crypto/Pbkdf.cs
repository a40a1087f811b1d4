// PBKDF2 (RFC 8018 section 5.2) as LUKS1 uses it (LUKS1 On-Disk Format Specification 1.2.3, section 4: key slot
// and master-key digest derivation), and the iteration calibration of qemu's crypto/pbkdf.c
// (qcrypto_pbkdf2_count_iters: iterations per second, scaled to iter-time) and crypto/block-luks.c (minimum 1000
// iterations for key slots and the master-key digest; the digest uses a 1/8 of the slot count, as cryptsetup).
using System.Diagnostics;
using System.Security.Cryptography;
using VDisk.Engine.Core;

namespace VDisk.Engine.Crypto;

/// <summary>PBKDF2 over the LUKS hash names, and calibration of its iteration count.</summary>
internal static class Pbkdf
{
    /// <summary>qemu's QCRYPTO_BLOCK_LUKS_MIN_SLOT_KEY_ITERS and QCRYPTO_BLOCK_LUKS_MIN_MASTER_KEY_ITERS.</summary>
    public const int MinimumIterations = 1000;

    /// <summary>The .NET algorithm for a LUKS hash-spec name, or null when PBKDF2 cannot use it.</summary>
    public static HashAlgorithmName? Algorithm(string hash) => hash switch
    {
        "sha1" => HashAlgorithmName.SHA1,
        "sha256" => HashAlgorithmName.SHA256,
        "sha384" => HashAlgorithmName.SHA384,
        "sha512" => HashAlgorithmName.SHA512,
        _ => null,
    };

    /// <summary>Digest size in bytes of a supported hash, or null.</summary>
    public static int? HashSize(string hash) => hash switch
    {
        "sha1" => 20,
        "sha256" => 32,
        "sha384" => 48,
        "sha512" => 64,
        _ => null,
    };

    /// <summary>Fills <paramref name="destination"/> with PBKDF2-HMAC-<paramref name="hash"/>.</summary>
    public static void Derive(string hash, ReadOnlySpan<byte> password, ReadOnlySpan<byte> salt, int iterations, Span<byte> destination, string? path)
    {
        var algorithm = Algorithm(hash) ?? throw VDiskException.Unsupported(path ?? "", $"the LUKS hash '{hash}' is not supported (sha1, sha256, sha384, sha512).");
        Rfc2898DeriveBytes.Pbkdf2(password, salt, destination, iterations, algorithm);
    }

    /// <summary>
    /// Iterations that take about <paramref name="iterTime"/> on this machine for PBKDF2-<paramref name="hash"/> with a
    /// <paramref name="keyBytes"/>-byte output (never below <see cref="MinimumIterations"/>). Also returns the unclamped
    /// count, from which the master-key digest's count (a 1/8) is derived.
    /// </summary>
    public static (int Iterations, long Calibrated) Calibrate(string hash, int keyBytes, TimeSpan iterTime)
    {
        if (iterTime < TimeSpan.Zero) throw VDiskException.Invalid(null, "The LUKS iteration time cannot be negative.");
        // Time enough iterations to measure a rate: a few milliseconds for short targets, at most a quarter second.
        double measureMs = Math.Clamp(iterTime.TotalMilliseconds / 4, 4, 250);
        Span<byte> salt = stackalloc byte[32];
        Span<byte> output = stackalloc byte[64];
        ReadOnlySpan<byte> password = "calibration"u8;
        int count = 256;
        double rate;
        while (true)
        {
            var watch = Stopwatch.StartNew();
            Derive(hash, password, salt, count, output[..Math.Min(keyBytes, 64)], null);
            double ms = watch.Elapsed.TotalMilliseconds;
            if (ms >= measureMs || count >= 1 << 28)
            {
                rate = count / Math.Max(ms, 0.001);
                break;
            }
            count *= 2;
        }
        double wanted = rate * iterTime.TotalMilliseconds;
        long calibrated = (long)Math.Min(wanted, int.MaxValue);
        return ((int)Math.Max(calibrated, MinimumIterations), calibrated);
    }

    /// <summary>The master-key digest's iterations for a calibrated slot count: a 1/8, at least the minimum.</summary>
    public static int DigestIterations(long calibrated) => (int)Math.Max(calibrated / 8, MinimumIterations);
}
