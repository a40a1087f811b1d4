// The anti-forensic information splitter of LUKS1 (LUKS1 On-Disk Format Specification 1.2.3, section 2.4 "AF-Split"
// and "AF-Merge", and the diffuse function H: the block cut in digest-sized pieces, piece i replaced by
// hash(BE32(i) || piece), the last piece truncated), as qemu's crypto/afsplit.c implements it.
using System.Buffers.Binary;
using System.Security.Cryptography;

namespace VDisk.Engine.Crypto;

/// <summary>AF-split and AF-merge of a key over a number of stripes.</summary>
internal static class AfSplitter
{
    /// <summary>
    /// Splits <paramref name="key"/> into <paramref name="output"/> (key.Length * stripes bytes): stripes-1 random blocks
    /// and a last block that makes the merge give the key back.
    /// </summary>
    public static void Split(string hash, ReadOnlySpan<byte> key, int stripes, Span<byte> output)
    {
        int n = key.Length;
        if (output.Length != n * stripes) throw new ArgumentException("The output is not key length × stripes.", nameof(output));
        var block = GC.AllocateArray<byte>(n, pinned: true);
        try
        {
            RandomNumberGenerator.Fill(output[..(n * (stripes - 1))]);
            for (int i = 0; i < stripes - 1; i++)
            {
                SectorModes.Xor(block, output.Slice(i * n, n));
                Diffuse(hash, block);
            }
            var last = output.Slice((stripes - 1) * n, n);
            key.CopyTo(last);
            SectorModes.Xor(last, block);
        }
        finally { CryptographicOperations.ZeroMemory(block); }
    }

    /// <summary>Merges <paramref name="material"/> (key.Length * stripes bytes) into <paramref name="key"/>.</summary>
    public static void Merge(string hash, ReadOnlySpan<byte> material, int stripes, Span<byte> key)
    {
        int n = key.Length;
        if (material.Length != n * stripes) throw new ArgumentException("The material is not key length × stripes.", nameof(material));
        key.Clear();
        for (int i = 0; i < stripes - 1; i++)
        {
            SectorModes.Xor(key, material.Slice(i * n, n));
            Diffuse(hash, key);
        }
        SectorModes.Xor(key, material.Slice((stripes - 1) * n, n));
    }

    /// <summary>The diffusion H: each digest-sized piece i becomes hash(BE32(i) || piece), the last one truncated.</summary>
    private static void Diffuse(string hash, Span<byte> block)
    {
        int digestSize = Pbkdf.HashSize(hash) ?? throw new ArgumentException($"Unknown hash {hash}.", nameof(hash));
        var algorithm = Pbkdf.Algorithm(hash)!.Value;
        Span<byte> input = stackalloc byte[4 + 64];
        Span<byte> digest = stackalloc byte[64];
        int pieces = (block.Length + digestSize - 1) / digestSize;
        for (int i = 0; i < pieces; i++)
        {
            var piece = block.Slice(i * digestSize, Math.Min(digestSize, block.Length - i * digestSize));
            BinaryPrimitives.WriteUInt32BigEndian(input, (uint)i);
            piece.CopyTo(input[4..]);
            HashOnce(algorithm, input[..(4 + piece.Length)], digest);
            digest[..piece.Length].CopyTo(piece);
        }
        CryptographicOperations.ZeroMemory(input);
        CryptographicOperations.ZeroMemory(digest);
    }

    private static void HashOnce(HashAlgorithmName algorithm, ReadOnlySpan<byte> input, Span<byte> digest)
    {
        if (algorithm == HashAlgorithmName.SHA1) SHA1.HashData(input, digest);
        else if (algorithm == HashAlgorithmName.SHA256) SHA256.HashData(input, digest);
        else if (algorithm == HashAlgorithmName.SHA384) SHA384.HashData(input, digest);
        else SHA512.HashData(input, digest);
    }
}
