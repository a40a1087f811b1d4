// Writing compressed clusters (qcow2.rst "Compressed Clusters Descriptor"): a unit is always one whole cluster.
// zlib payloads are raw deflate with a 4 KiB window (QEMU inflates with windowBits -12); zstd payloads are single
// frames (ZstdCodec: the system's libzstd, else ZstdSharp). A cluster that does not shrink below the cluster
// size is stored uncompressed. Payloads are packed by the metadata core and written through its checked view.
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

    /// <inheritdoc/>
    public int CompressionUnit => ClusterSize;

    /// <inheritdoc/>
    public bool TryCompress(ReadOnlySpan<byte> unit, Span<byte> output, out int length)
    {
        if (unit.Length != ClusterSize) throw new ArgumentException($"a compressed unit is one whole cluster ({ClusterSize} bytes), not {unit.Length}", nameof(unit));
        var limit = output[..Math.Min(output.Length, ClusterSize - 1)];
        if (Header.CompressionType == CompressionType.Zstd) return _zstd.Value!.TryCompress(unit, limit, out length);
        length = 0;
        if (CompressibilityProbe.LooksIncompressible(unit, QemuWindowBits)) return false;
        return NativeDeflate.TryCompress(unit, limit, DeflateLevel, QemuWindowBits, out length);
    }

    /// <inheritdoc/>
    public void WriteCompressed(long guestOffset, ReadOnlySpan<byte> payload)
    {
        if (_encryption != null)
            throw VDiskException.Unsupported(Storage.Name, "compression and encryption cannot be used together in one qcow2 image (QEMU refuses it too).");
        if (Header.Version < 3 && Header.CompressionType != CompressionType.Zlib)
            throw new InvalidOperationException("zstd needs qcow2 version 3");
        if ((guestOffset & (ClusterSize - 1)) != 0)
            throw new ArgumentException($"compressed clusters start on a cluster boundary; 0x{guestOffset:x} does not", nameof(guestOffset));
        var host = _image.AllocateCompressed(payload.Length);
        _image.DataStorage.WriteAt(host.Value, payload);
        ulong entry = Qcow2Entries.CompressedEntry(host.Value, payload.Length, Header.ClusterBits);
        _image.UpdateEntries(guestOffset >> Header.ClusterBits, 1, (_, _) => entry);
    }
}
