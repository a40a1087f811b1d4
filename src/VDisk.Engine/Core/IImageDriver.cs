// The format driver contract (DESIGN.md "Core: the image abstraction"): a driver answers mapping
// questions and reserves space; VirtualDisk does all guest I/O with the answers.
using VDisk.Engine.Storage;

namespace VDisk.Engine.Core;

/// <summary>One open image file of one format. Implementations must allow concurrent <see cref="Map"/> calls.</summary>
/// <remarks>Dispose writes back and flushes everything when the image is open for writing, as QEMU does on close.</remarks>
public interface IImageDriver : IDisposable
{
    /// <summary>The format of this image.</summary>
    ImageFormat Format { get; }

    /// <summary>The main image file.</summary>
    IStorage Storage { get; }

    /// <summary>Every host file of the image (the main file first; VMDK may have extent files).</summary>
    IReadOnlyList<IStorage> Files => new[] { Storage };

    /// <summary>Guest-visible size in bytes.</summary>
    long VirtualSize { get; }

    /// <summary>Allocation granularity in bytes (a power of two). Mapping runs change kind only on these boundaries.</summary>
    int ClusterSize { get; }

    /// <summary>The backing image this image names, or null.</summary>
    BackingReference? Backing { get; }

    /// <summary>Maps the run starting at <paramref name="guestOffset"/>, at most <paramref name="maxLength"/> bytes long.</summary>
    Mapping Map(long guestOffset, long maxLength);

    /// <summary>
    /// Maps the run for moving its bytes on a VM's data path (Measure-VDiskPerformance): like <see cref="Map"/>, but a
    /// driver whose host file reads the same bytes either way may skip telling holes from data. Raw does (a hole reads
    /// as zeroes), saving the two lseek calls and the fstat <see cref="Map"/> costs per request, as QEMU's raw driver
    /// makes none on its read and write path. <see cref="Map"/> stays exact for map queries and copies.
    /// </summary>
    Mapping MapForIo(long guestOffset, long maxLength) => Map(guestOffset, maxLength);

    /// <summary>Reads guest bytes of a <see cref="ExtentKind.Compressed"/> run; the range lies inside one cluster.</summary>
    void ReadCompressed(long guestOffset, Span<byte> destination);

    /// <summary>
    /// Reserves fresh, writable host space for the cluster-aligned guest range starting at
    /// <paramref name="guestOffset"/>; may return less than <paramref name="length"/> (at least one cluster).
    /// The guest still sees the old mapping until <see cref="Link"/>.
    /// </summary>
    HostRun Allocate(long guestOffset, long length);

    /// <summary>Points the guest range at <paramref name="run"/> (after its data is written) and releases what it replaced.</summary>
    void Link(long guestOffset, HostRun run);

    /// <summary>
    /// Makes the cluster-aligned range read as zeroes without writing data, releasing space when
    /// <paramref name="unmap"/>. Returns how many bytes from <paramref name="guestOffset"/> it handled; 0 means
    /// the caller must write zero bytes instead.
    /// </summary>
    long ZeroClusters(long guestOffset, long length, bool unmap);

    /// <summary>Writes cached metadata back and flushes the storage.</summary>
    void Flush();

    /// <summary>Format-specific facts for <see cref="Operations.ImageInfo"/>.</summary>
    FormatDetails Details { get; }
}
