// Encrypted backup sets (issue 13 "encrypted backups"): every point is a LUKS-encrypted qcow2 image with the set's
// passphrase, so plain qemu-img restores it with the secret; the block hashes that decide what a backup copies are
// HMAC-SHA-256 under a key derived from the passphrase (PBKDF2-SHA-256 with the set's salt), so they say nothing about
// guest data to whoever holds the files. A key check value in the manifest tells a wrong passphrase at once.
using System.Security.Cryptography;
using System.Text;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;

namespace VDisk.Engine.Backup;

/// <summary>How a backup set is encrypted, as its manifest records it (no secret, no guest data).</summary>
public sealed record BackupEncryption
{
    /// <summary>Always "luks": each point is a LUKS-encrypted qcow2 image.</summary>
    public string Format { get; init; } = "luks";
    /// <summary>The points' cipher, e.g. aes-256-xts-plain64.</summary>
    public required string Cipher { get; init; }
    /// <summary>The hash of the points' key derivation.</summary>
    public required string Hash { get; init; }
    /// <summary>How long deriving a point's key takes when it is made, in milliseconds.</summary>
    public int IterTimeMilliseconds { get; init; }
    /// <summary>Salt of the block hash key (hex).</summary>
    public required string HashKeySalt { get; init; }
    /// <summary>PBKDF2-SHA-256 iterations of the block hash key.</summary>
    public int HashKeyIterations { get; init; }
    /// <summary>HMAC-SHA-256 of a fixed text under the block hash key (hex): tells whether a passphrase is the set's.</summary>
    public required string KeyCheck { get; init; }

    /// <summary>The LUKS settings of the set's points.</summary>
    internal LuksFormatOptions PointOptions => new()
    {
        Spec = LuksCipherNames.Parse(Cipher, Hash),
        IterTime = TimeSpan.FromMilliseconds(Math.Max(1, IterTimeMilliseconds)),
    };
}

/// <summary>The unlocked secrets of an encrypted set: the passphrase that opened it and its block hash key.</summary>
internal sealed class BackupKey : IDisposable
{
    private const int KeyIterations = 600_000; // OWASP's figure for PBKDF2-HMAC-SHA-256; about a third of a second here
    private static readonly byte[] CheckText = Encoding.ASCII.GetBytes("vdisk-backup block hash key check");
    private readonly byte[] _hashKey;

    private BackupKey(Passphrase passphrase, byte[] hashKey)
    {
        Passphrase = passphrase;
        _hashKey = hashKey;
    }

    /// <summary>The passphrase of the set's points (not owned).</summary>
    public Passphrase Passphrase { get; }

    /// <summary>The HMAC key of the block hashes. Valid until Dispose.</summary>
    public byte[] HashKey => _hashKey;

    /// <summary>A new set's encryption record and its key, for <paramref name="passphrase"/>.</summary>
    public static (BackupEncryption Record, BackupKey Key) Create(LuksFormatOptions points, Passphrase passphrase)
    {
        var salt = RandomNumberGenerator.GetBytes(32);
        var key = Derive(passphrase, salt, KeyIterations);
        var record = new BackupEncryption
        {
            Cipher = points.Spec.ToString(), Hash = points.Spec.Hash, IterTimeMilliseconds = (int)points.IterTime.TotalMilliseconds,
            HashKeySalt = Convert.ToHexString(salt).ToLowerInvariant(), HashKeyIterations = KeyIterations, KeyCheck = Check(key),
        };
        return (record, new BackupKey(passphrase, key));
    }

    /// <summary>
    /// The key of an encrypted set from the first of <paramref name="candidates"/> that is its passphrase: none given is
    /// PassphraseRequired, none right is WrongPassphrase.
    /// </summary>
    public static BackupKey Unlock(BackupEncryption record, IReadOnlyList<Passphrase> candidates, string folder)
    {
        if (candidates.Count == 0)
            throw new VDiskException(VDiskErrorKind.PassphraseRequired, folder, $"{folder}: the backup set is encrypted; give its passphrase (-Passphrase or -PassphraseFile).");
        byte[] salt;
        try { salt = Convert.FromHexString(record.HashKeySalt); }
        catch (FormatException) { throw VDiskException.Corrupt(folder, "the backup manifest's hash key salt is not hexadecimal."); }
        if (record.HashKeyIterations < 1000)
            throw VDiskException.Corrupt(folder, $"the backup manifest's hash key iterations ({record.HashKeyIterations}) are fewer than 1000.");
        foreach (var candidate in candidates)
        {
            var key = Derive(candidate, salt, record.HashKeyIterations);
            if (CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Check(key)), Encoding.ASCII.GetBytes(record.KeyCheck)))
                return new BackupKey(candidate, key);
            CryptographicOperations.ZeroMemory(key);
        }
        throw new VDiskException(VDiskErrorKind.WrongPassphrase, folder,
            $"{folder}: {(candidates.Count == 1 ? "the passphrase given is" : $"none of the {candidates.Count} passphrases given is")} not the backup set's.");
    }

    private static byte[] Derive(Passphrase passphrase, byte[] salt, int iterations)
    {
        var key = GC.AllocateArray<byte>(32, pinned: true);
        Rfc2898DeriveBytes.Pbkdf2(passphrase.Bytes, salt, key, iterations, HashAlgorithmName.SHA256);
        return key;
    }

    private static string Check(byte[] key) => Convert.ToHexString(HMACSHA256.HashData(key, CheckText)).ToLowerInvariant();

    /// <summary>Zeroes the hash key.</summary>
    public void Dispose() => CryptographicOperations.ZeroMemory(_hashKey);
}
