// Compressed grains of stream-optimized extents (VMware Virtual Disk Format 1.1, "Stream-Optimized
// Compressed Sparse Extents"). QEMU's block/vmdk.c writes them with zlib's compress() and reads them with
// uncompress(): zlib streams (RFC 1950, 2-byte header and Adler-32 trailer), not raw deflate.
using System.IO.Compression;
using VDisk.Engine.Compression;
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>zlib compression of one grain.</summary>
internal static class VmdkGrainCompression
{
    private const int ZlibWindowBits = 15; // positive: a zlib-wrapped stream
    // zlib's default, as qemu's compress() uses. (qcow2 uses 7 to match classic zlib's sizes; with VMDK's 32 KiB window
    // zlib-ng's level 7 searches much longer and doubles the time, for under 1 % of size.)
    private const int Level = 6;

    /// <summary>
    /// Compresses <paramref name="grain"/> into <paramref name="output"/>; returns the compressed length. Grains the
    /// probe finds incompressible are stored (deflate level 0): the format has no uncompressed grains, and full
    /// effort on random data only burns time.
    /// </summary>
    public static int Compress(ReadOnlySpan<byte> grain, Span<byte> output)
    {
        int level = CompressibilityProbe.LooksIncompressible(grain, ZlibWindowBits) ? 0 : Level;
        if (NativeDeflate.TryCompress(grain, output, level, ZlibWindowBits, out int written)) return written;
        var buffer = new MemoryStream(grain.Length / 2 + 64);
        using (var zlib = new ZLibStream(buffer, CompressionLevel.Optimal, leaveOpen: true))
            zlib.Write(grain);
        int length = (int)buffer.Length;
        if (length > output.Length)
            throw new ArgumentException($"The output buffer ({output.Length} bytes) cannot hold the compressed grain ({length} bytes).", nameof(output));
        buffer.GetBuffer().AsSpan(0, length).CopyTo(output);
        return length;
    }

    /// <summary>
    /// Inflates a zlib stream into <paramref name="grain"/>; returns the inflated length, which may be shorter than a
    /// grain only for the last grain of a disk. Damaged or oversized streams are reported as corruption.
    /// </summary>
    public static int Decompress(byte[] compressed, int length, Span<byte> grain, string path, long hostOffset)
    {
        try
        {
            using var zlib = new ZLibStream(new MemoryStream(compressed, 0, length, writable: false), CompressionMode.Decompress);
            int done = 0;
            while (done < grain.Length)
            {
                int n = zlib.Read(grain[done..]);
                if (n == 0) break;
                done += n;
            }
            Span<byte> extra = stackalloc byte[1];
            if (done == grain.Length && zlib.Read(extra) != 0)
                throw VDiskException.Corrupt(path, $"the compressed grain at host offset 0x{hostOffset:x} inflates to more than a grain ({grain.Length} bytes).");
            return done;
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            throw new VDiskException(VDiskErrorKind.Corrupt, path, $"{path}: the compressed grain at host offset 0x{hostOffset:x} cannot be inflated: {e.Message}", e);
        }
    }
}
