// Writing compressed clusters (qcow2.rst "Compressed Clusters Descriptor"): payloads are packed back to
// back into host clusters like qemu-img does; every host cluster a payload touches gains one reference.
// zlib payloads are raw deflate with a 4 KiB window (QEMU inflates with windowBits -12); zstd payloads
// are single frames (ZstdCodec: the system's libzstd, else ZstdSharp). A cluster that does not shrink below the cluster size is stored uncompressed.
using VDisk.Engine.Compression;
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Qcow2;

public sealed partial class Qcow2Driver
{
    private const int QemuWindowBits = -12;
    // qemu-img uses zlib's default level 6. The runtime's zlib-ng at level 6 makes streams about 1.6 % larger than
    // classic zlib's on disk data; level 7 brings the output back within about 1 % of qemu-img's, and is still
    // several times faster than qemu-img (see README, Compression).
    private const int DeflateLevel = 7;
    private const int ZstdLevel = 3;    // ZSTD_CLEVEL_DEFAULT, as qemu-img uses
    private readonly ThreadLocal<IZstdCompressor> _zstd = new(() => ZstdCodec.Create(ZstdLevel), trackAllValues: true);
    private long _compressedCursor; // next free byte in the host cluster being packed, 0 when none

    /// <inheritdoc/>
    public int CompressionUnit => ClusterSize;

    /// <inheritdoc/>
    public bool TryCompress(ReadOnlySpan<byte> unit, Span<byte> output, out int length)
    {
        var limit = output[..Math.Min(output.Length, ClusterSize - 1)];
        if (_header.CompressionType == CompressionType.Zstd) return _zstd.Value!.TryCompress(unit, limit, out length);
        length = 0;
        if (CompressibilityProbe.LooksIncompressible(unit, QemuWindowBits)) return false;
        return NativeDeflate.TryCompress(unit, limit, DeflateLevel, QemuWindowBits, out length);
    }

    /// <inheritdoc/>
    public void WriteCompressed(long guestOffset, ReadOnlySpan<byte> payload)
    {
        if (_header.Version < 3 && _header.CompressionType != CompressionType.Zlib)
            throw new InvalidOperationException("zstd needs qcow2 version 3");
        long host;
        lock (_lock) host = AllocateBytes(payload.Length);
        Storage.WriteAt(host, payload);
        lock (_lock)
        {
            ulong entry = Qcow2Entries.CompressedEntry(host, payload.Length, _header.ClusterBits);
            _map.Update(guestOffset >> _header.ClusterBits, 1, (_, _) => entry);
        }
    }

    // Packs a payload (shorter than a cluster) right after the previous one. It continues into the next host
    // cluster when that one is free, else it starts in a fresh cluster. Every cluster a payload touches gains
    // one reference; a freshly allocated cluster starts at 1, which is the first payload's reference.
    private long AllocateBytes(int length)
    {
        long cs = ClusterSize;
        if (length >= cs) throw new ArgumentOutOfRangeException(nameof(length), "a compressed payload must be shorter than a cluster");
        long start;
        if (_compressedCursor == 0)
        {
            start = _refcounts.Allocate(1).Offset;
        }
        else if (_compressedCursor % cs + length <= cs)
        {
            start = _compressedCursor;
            _refcounts.Update(start, 1, +1);
        }
        else
        {
            long next = _refcounts.Allocate(1).Offset;
            if (next == (_compressedCursor / cs + 1) * cs)
            {
                start = _compressedCursor;
                _refcounts.Update(start, 1, +1);
            }
            else
            {
                start = next; // not adjacent: leave the tail of the old cluster unused
            }
        }
        long end = start + length;
        _compressedCursor = end % cs == 0 ? 0 : end;
        return start;
    }
}
