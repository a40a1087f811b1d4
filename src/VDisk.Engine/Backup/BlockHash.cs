// Block hashes of a backup set (issue 11 "The backup set": a hash per block of the guest content). Guest content is
// cut into 64 KiB blocks (the backup images' cluster size); each block is hashed with SHA-256 (in the BCL, and
// hardware-accelerated on x86-64 with SHA-NI and on arm64), the last block padded with zeroes to a whole block, so
// one hash stands for "all zeroes" everywhere. An encrypted set keys the hash (HMAC-SHA-256, see BackupEncryption);
// "all zeroes" keeps the plain value there too, as a marker (the images show which clusters are zero anyway).
using System.Buffers.Binary;
using System.Security.Cryptography;

namespace VDisk.Engine.Backup;

/// <summary>The SHA-256 of one guest block.</summary>
public readonly record struct BlockHash(UInt128 High, UInt128 Low)
{
    /// <summary>Bytes per hashed block: the cluster size of every image in a backup set.</summary>
    public const int BlockSize = 65536;

    /// <summary>Bytes of a hash.</summary>
    public const int Size = 32;

    /// <summary>The hash of a block of zeroes (what an unallocated block reads as).</summary>
    public static BlockHash Zero { get; } = Compute(new byte[BlockSize]);

    /// <summary>
    /// The hash of <paramref name="block"/>, padded with zeroes to <see cref="BlockSize"/> when shorter; an HMAC under
    /// <paramref name="key"/> when one is given (an encrypted set's).
    /// </summary>
    public static BlockHash Of(ReadOnlySpan<byte> block, byte[]? key = null)
    {
        if (block.Length > BlockSize) throw new ArgumentOutOfRangeException(nameof(block), "A block is at most 64 KiB.");
        return block.IndexOfAnyExcept((byte)0) < 0 ? Zero : Compute(block, key); // zeroes are common and cheaper to find than to hash
    }

    private static BlockHash Compute(ReadOnlySpan<byte> block, byte[]? key = null)
    {
        Span<byte> digest = stackalloc byte[Size];
        if (block.Length == BlockSize)
        {
            if (key is null) SHA256.HashData(block, digest);
            else HMACSHA256.HashData(key, block, digest);
        }
        else
        {
            using var hash = key is null ? IncrementalHash.CreateHash(HashAlgorithmName.SHA256) : IncrementalHash.CreateHMAC(HashAlgorithmName.SHA256, key);
            hash.AppendData(block);
            Span<byte> zeroes = stackalloc byte[4096];
            zeroes.Clear();
            for (int left = BlockSize - block.Length; left > 0; left -= zeroes.Length)
                hash.AppendData(zeroes[..Math.Min(left, zeroes.Length)]);
            hash.GetHashAndReset(digest);
        }
        return Read(digest);
    }

    /// <summary>A hash from its 32 bytes.</summary>
    public static BlockHash Read(ReadOnlySpan<byte> bytes) =>
        new(BinaryPrimitives.ReadUInt128BigEndian(bytes), BinaryPrimitives.ReadUInt128BigEndian(bytes[16..]));

    /// <summary>Writes the 32 bytes.</summary>
    public void Write(Span<byte> bytes)
    {
        BinaryPrimitives.WriteUInt128BigEndian(bytes, High);
        BinaryPrimitives.WriteUInt128BigEndian(bytes[16..], Low);
    }

    /// <summary>Lowercase hex, as sha256sum prints it.</summary>
    public override string ToString()
    {
        Span<byte> bytes = stackalloc byte[Size];
        Write(bytes);
        return Convert.ToHexString(bytes).ToLowerInvariant();
    }
}

/// <summary>
/// Whole-file checksums of a backup set's files: XXH128 (System.IO.Hashing), which finds any changed byte at memory
/// speed. Files are checked against damage, not an attacker (who could rewrite the manifest too), so the strong,
/// slower SHA-256 is kept for the block hashes, which decide what a backup copies.
/// </summary>
public static class FileChecksums
{
    /// <summary>The checksum of a file's bytes: "xxh128:" and 32 lowercase hex digits.</summary>
    public static string Of(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, 1);
        var hash = new System.IO.Hashing.XxHash128();
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            for (int n; (n = file.Read(buffer, 0, 1 << 20)) > 0;) hash.Append(buffer.AsSpan(0, n));
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }
        return "xxh128:" + Convert.ToHexString(hash.GetCurrentHash()).ToLowerInvariant();
    }
}
