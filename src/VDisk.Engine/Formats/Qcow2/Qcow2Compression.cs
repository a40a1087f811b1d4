// Decompression of qcow2 compressed clusters (qcow2.rst "Compressed Clusters Descriptor" and the
// compression_type header field): raw deflate for zlib, a zstd frame for zstd. Trailing sector
// padding after the stream is ignored, as QEMU does.
using System.IO.Compression;
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Qcow2;

internal static class Qcow2Compression
{
    /// <summary>Inflates <paramref name="compressed"/> into exactly <paramref name="cluster"/>.Length bytes.</summary>
    public static void Decompress(CompressionType type, byte[] compressed, Span<byte> cluster, string path, long hostOffset)
    {
        try
        {
            using var input = new MemoryStream(compressed, writable: false);
            using Stream stream = type == CompressionType.Zstd
                ? new ZstdSharp.DecompressionStream(input)
                : new DeflateStream(input, CompressionMode.Decompress);
            int done = 0;
            while (done < cluster.Length)
            {
                int n = stream.Read(cluster[done..]);
                if (n == 0) break;
                done += n;
            }
            if (done != cluster.Length)
                throw VDiskException.Corrupt(path, $"compressed cluster at host offset 0x{hostOffset:x} inflates to {done} bytes, not {cluster.Length}.");
        }
        catch (Exception e) when (e is InvalidDataException or ZstdSharp.ZstdException or IOException)
        {
            throw new VDiskException(VDiskErrorKind.Corrupt, path, $"{path}: compressed cluster at host offset 0x{hostOffset:x} cannot be decompressed ({type}): {e.Message}", e);
        }
    }
}
