// Drivers that can store compressed clusters (qcow2 with compression, VMDK streamOptimized) expose
// their codec and an in-order write of compressed payloads, so a parallel converter can compress on
// worker threads and write in order (DESIGN.md "Operations": pipeline).
namespace VDisk.Engine.Core;

/// <summary>Compressed-cluster output for a driver.</summary>
public interface ICompressedClusterWriter
{
    /// <summary>Bytes per compressed unit (qcow2 cluster, VMDK grain).</summary>
    int CompressionUnit { get; }

    /// <summary>
    /// Compresses one unit into <paramref name="output"/> (at least <see cref="CompressionUnit"/> * 2 bytes) in the
    /// form the format stores. Thread-safe. Returns false when the data should be stored uncompressed instead.
    /// </summary>
    bool TryCompress(ReadOnlySpan<byte> unit, Span<byte> output, out int length);

    /// <summary>
    /// Stores a payload from <see cref="TryCompress"/> for the unit at <paramref name="guestOffset"/> (unit-aligned,
    /// not yet allocated in this image). Called by one writer thread, in increasing guest order.
    /// </summary>
    void WriteCompressed(long guestOffset, ReadOnlySpan<byte> payload);
}
