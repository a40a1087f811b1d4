// Encrypted guest data in an image file (qcow2.rst "crypt_method"; QEMU's qcow2_co_encrypt/decrypt): every
// 512-byte sector is enciphered on its own, its IV made from a sector number. For LUKS that number is the host
// offset / 512 (QEMU's crypt_physical_offset); for the legacy AES method it is the guest offset / 512, so a view
// is made per mapping with the guest-minus-host distance as its bias. Partial sectors are read, deciphered,
// patched and written back whole.
using System.Buffers;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Crypto;

/// <summary>
/// A view of an image file whose reads decrypt and whose writes encrypt. Does not own the file or the cipher.
/// Zeroing writes enciphered zero sectors (a host hole would decrypt to noise).
/// </summary>
public sealed class EncryptedStorage : StorageWrapper
{
    private const int Sector = SectorCipher.SectorSize;
    private const int ChunkBytes = 1 << 20;
    private readonly SectorCipher _cipher;
    private readonly long _ivBias;

    /// <summary>Wraps <paramref name="inner"/>: the sector at host offset h uses the IV of sector (h + <paramref name="ivBias"/>) / 512.</summary>
    public EncryptedStorage(IStorage inner, SectorCipher cipher, long ivBias = 0) : base(inner)
    {
        if (ivBias % Sector != 0) throw new ArgumentException("the IV bias must be a whole number of sectors", nameof(ivBias));
        _cipher = cipher;
        _ivBias = ivBias;
    }

    /// <inheritdoc/>
    public override void ReadAt(long offset, Span<byte> buffer)
    {
        if (buffer.IsEmpty) return;
        if (offset % Sector == 0 && buffer.Length % Sector == 0)
        {
            Inner.ReadAt(offset, buffer);
            _cipher.Decrypt(SectorOf(offset), buffer);
            return;
        }
        long start = offset / Sector * Sector;
        int length = (int)(AlignUp(offset + buffer.Length) - start);
        byte[] whole = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var span = whole.AsSpan(0, length);
            Inner.ReadAt(start, span);
            _cipher.Decrypt(SectorOf(start), span);
            span.Slice((int)(offset - start), buffer.Length).CopyTo(buffer);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(whole, clearArray: true);
        }
    }

    /// <inheritdoc/>
    public override void WriteAt(long offset, ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            int n = Math.Min(data.Length, ChunkBytes);
            WriteChunk(offset, data[..n]);
            offset += n;
            data = data[n..];
        }
    }

    /// <inheritdoc/>
    public override void WriteZeroes(long offset, long length)
    {
        byte[] zeroes = new byte[(int)Math.Min(length, ChunkBytes)];
        for (long done = 0; done < length; done += zeroes.Length)
            WriteAt(offset + done, zeroes.AsSpan(0, (int)Math.Min(zeroes.Length, length - done)));
    }

    /// <inheritdoc/>
    public override void Discard(long offset, long length) => WriteZeroes(offset, length);

    /// <summary>Always false: a hole in the file does not read as zeroes through the cipher.</summary>
    public override bool TryGetExtent(long offset, out bool isData, out long length)
    {
        isData = true;
        length = 0;
        return false;
    }

    /// <summary>The cipher and the file stay with their owners.</summary>
    public override void Dispose() { }

    // One write of at most ChunkBytes: whole sectors, the first and last read back first when only partly written.
    private void WriteChunk(long offset, ReadOnlySpan<byte> data)
    {
        long start = offset / Sector * Sector;
        long end = AlignUp(offset + data.Length);
        int length = (int)(end - start);
        byte[] whole = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            var span = whole.AsSpan(0, length);
            if (start < offset) ReadAt(start, span[..Sector]);
            bool lastIsFirst = end - Sector == start;
            if (end > offset + data.Length && (!lastIsFirst || start == offset)) ReadAt(end - Sector, span[^Sector..]);
            data.CopyTo(span[(int)(offset - start)..]);
            _cipher.Encrypt(SectorOf(start), span);
            Inner.WriteAt(start, span);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(whole, clearArray: true);
        }
    }

    private long SectorOf(long hostOffset) => (hostOffset + _ivBias) / Sector;

    private static long AlignUp(long value) => (value + Sector - 1) / Sector * Sector;
}
