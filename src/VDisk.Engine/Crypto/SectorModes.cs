// The block-cipher modes of a sector cipher, batched over many sectors with .NET's one-shot AES calls:
// - XTS-AES (IEEE 1619-2007 section 5.3, without ciphertext stealing: units are whole 16-byte blocks): all the
//   sectors' first tweaks in one ECB call with key 2, the tweaks expanded by multiplication by alpha in GF(2^128)
//   (section 5.2, little-endian, reduction 0x87), one ECB call with key 1 over the whole buffer between two XORs.
// - CBC (NIST SP 800-38A section 6.2) per sector with the sector's IV; decryption batched as one ECB call and an XOR
//   with the previous ciphertext block.
// - ECB (SP 800-38A section 6.1), which ignores the IV, as qemu's crypto/block.c does when the mode has no IV.
using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace VDisk.Engine.Crypto;

/// <summary>Mode kernels over one chunk of consecutive units (sectors) whose IVs are already computed.</summary>
internal static class SectorModes
{
    public const int Block = 16;

    /// <summary>
    /// XTS over <paramref name="data"/>, cut in units of <paramref name="unit"/> bytes (the last may be shorter, a multiple
    /// of 16). <paramref name="ivs"/> holds one 16-byte IV per unit and is overwritten with the encrypted tweaks;
    /// <paramref name="scratch"/> (at least data.Length) receives the expanded tweaks.
    /// </summary>
    public static void Xts(Aes dataKey, Aes tweakKey, Span<byte> ivs, Span<byte> data, int unit, Span<byte> scratch, bool encrypt)
    {
        tweakKey.EncryptEcb(ivs, ivs, PaddingMode.None);
        var tweaks = scratch[..data.Length];
        for (int u = 0, at = 0; at < data.Length; u++, at += unit)
        {
            int length = Math.Min(unit, data.Length - at);
            ulong lo = BinaryPrimitives.ReadUInt64LittleEndian(ivs.Slice(u * Block, 8));
            ulong hi = BinaryPrimitives.ReadUInt64LittleEndian(ivs.Slice(u * Block + 8, 8));
            var d = MemoryMarshal.Cast<byte, ulong>(data.Slice(at, length));
            var t = MemoryMarshal.Cast<byte, ulong>(tweaks.Slice(at, length));
            for (int w = 0; w < d.Length; w += 2)
            {
                t[w] = lo;
                t[w + 1] = hi;
                d[w] ^= lo;
                d[w + 1] ^= hi;
                // Multiply by alpha: shift the 128-bit little-endian value left, fold the carry back as x^7+x^2+x+1.
                ulong carry = (ulong)((long)hi >> 63) & 0x87;
                hi = (hi << 1) | (lo >> 63);
                lo = (lo << 1) ^ carry;
            }
        }
        if (encrypt) dataKey.EncryptEcb(data, data, PaddingMode.None);
        else dataKey.DecryptEcb(data, data, PaddingMode.None);
        Xor(data, tweaks);
    }

    /// <summary>
    /// CBC encryption of each unit with its IV (in place). CBC encryption is serial within a unit, so whole units are
    /// interleaved: block j of every unit (XORed with its unit's previous ciphertext block or IV) goes through one ECB call.
    /// </summary>
    public static void CbcEncrypt(Aes key, ReadOnlySpan<byte> ivs, Span<byte> data, int unit, Span<byte> scratch)
    {
        int units = data.Length / unit;
        if (data.Length % unit != 0 || units < 2)
        {
            for (int u = 0, at = 0; at < data.Length; u++, at += unit)
            {
                var span = data.Slice(at, Math.Min(unit, data.Length - at));
                key.EncryptCbc(span, ivs.Slice(u * Block, Block), span, PaddingMode.None);
            }
            return;
        }
        var column = scratch[..(units * Block)];
        var c = MemoryMarshal.Cast<byte, ulong>(column);
        var d = MemoryMarshal.Cast<byte, ulong>(data);
        var iv = MemoryMarshal.Cast<byte, ulong>(ivs);
        int stride = unit / 8;
        for (int j = 0; j < unit / Block; j++)
        {
            for (int u = 0; u < units; u++)
            {
                int at = u * stride + 2 * j;
                if (j == 0)
                {
                    c[2 * u] = d[at] ^ iv[2 * u];
                    c[2 * u + 1] = d[at + 1] ^ iv[2 * u + 1];
                }
                else
                {
                    c[2 * u] = d[at] ^ d[at - 2];
                    c[2 * u + 1] = d[at + 1] ^ d[at - 1];
                }
            }
            key.EncryptEcb(column, column, PaddingMode.None);
            for (int u = 0; u < units; u++)
            {
                int at = u * stride + 2 * j;
                d[at] = c[2 * u];
                d[at + 1] = c[2 * u + 1];
            }
        }
    }

    /// <summary>CBC decryption of all units at once: one ECB pass, then XOR with the previous ciphertext block or the IV.</summary>
    public static void CbcDecrypt(Aes key, ReadOnlySpan<byte> ivs, Span<byte> data, int unit, Span<byte> scratch)
    {
        var cipherText = scratch[..data.Length];
        data.CopyTo(cipherText);
        key.DecryptEcb(data, data, PaddingMode.None);
        for (int u = 0, at = 0; at < data.Length; u++, at += unit)
        {
            int length = Math.Min(unit, data.Length - at);
            Xor(data.Slice(at, Block), ivs.Slice(u * Block, Block));
            Xor(data.Slice(at + Block, length - Block), cipherText.Slice(at, length - Block));
        }
    }

    /// <summary>ECB over the whole buffer (the IV is not used).</summary>
    public static void Ecb(Aes key, Span<byte> data, bool encrypt)
    {
        if (encrypt) key.EncryptEcb(data, data, PaddingMode.None);
        else key.DecryptEcb(data, data, PaddingMode.None);
    }

    /// <summary><paramref name="destination"/> ^= <paramref name="source"/> (the first destination.Length bytes), vectorized.</summary>
    public static void Xor(Span<byte> destination, ReadOnlySpan<byte> source)
    {
        source = source[..destination.Length];
        int i = 0;
        if (Vector.IsHardwareAccelerated && destination.Length >= Vector<byte>.Count)
        {
            var d = MemoryMarshal.Cast<byte, Vector<byte>>(destination);
            var s = MemoryMarshal.Cast<byte, Vector<byte>>(source);
            for (int v = 0; v < d.Length; v++) d[v] ^= s[v];
            i = d.Length * Vector<byte>.Count;
        }
        var dw = MemoryMarshal.Cast<byte, ulong>(destination[i..]);
        var sw = MemoryMarshal.Cast<byte, ulong>(source[i..]);
        for (int w = 0; w < dw.Length; w++) dw[w] ^= sw[w];
        for (i += dw.Length * 8; i < destination.Length; i++) destination[i] ^= source[i];
    }
}
