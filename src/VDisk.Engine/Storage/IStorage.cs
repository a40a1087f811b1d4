// Positional byte storage that an image file lives in (DESIGN.md "Storage").
// No cursor: every call names its offset, so concurrent readers need no locking.
namespace VDisk.Engine.Storage;

/// <summary>Random-access bytes behind one image file (a host file, or memory in tests).</summary>
public interface IStorage : IDisposable
{
    /// <summary>The file path (or a description) used in error messages.</summary>
    string Name { get; }

    /// <summary>True when the storage was opened for writing.</summary>
    bool CanWrite { get; }

    /// <summary>The cache mode the storage was opened with.</summary>
    CacheMode CacheMode { get; }

    /// <summary>
    /// Alignment (bytes) that offsets, lengths and memory of I/O must have to go straight to the device: 1 for buffered
    /// files and memory, the direct-I/O block size for cache modes None and DirectSync. Unaligned requests still work
    /// (through a bounce buffer); buffers from <see cref="AlignedBufferPool"/> avoid that copy.
    /// </summary>
    int Alignment => 1;

    /// <summary>Current length in bytes.</summary>
    long Length { get; }

    /// <summary>Reads exactly <paramref name="buffer"/>.Length bytes; bytes past the end read as zero.</summary>
    void ReadAt(long offset, Span<byte> buffer);

    /// <summary>Writes all of <paramref name="data"/> at <paramref name="offset"/>, extending the storage if needed.</summary>
    void WriteAt(long offset, ReadOnlySpan<byte> data);

    /// <summary>Makes a range read as zeroes, releasing host space where the host can (hole punching).</summary>
    void Discard(long offset, long length);

    /// <summary>Makes a range read as zeroes while keeping it allocated where the host can.</summary>
    void WriteZeroes(long offset, long length);

    /// <summary>Reserves host space for a range without changing its content (fallocate).</summary>
    void Preallocate(long offset, long length);

    /// <summary>Truncates or extends (with zeroes) to <paramref name="length"/>.</summary>
    void SetLength(long length);

    /// <summary>Makes completed writes durable, as the cache mode defines.</summary>
    void Flush();

    /// <summary>Bytes the host actually stores for this file (sparse files use less than Length).</summary>
    long AllocatedBytes { get; }

    /// <summary>
    /// Where the next run of data or hole begins at or after <paramref name="offset"/>, from the host's
    /// sparse-file map. Returns false when the host cannot tell (then everything counts as data).
    /// </summary>
    bool TryGetExtent(long offset, out bool isData, out long length);
}
