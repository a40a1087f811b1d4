// What Measure-VDisk writes: the space a new image needs (qemu-img measure --output=json: required, fully-allocated,
// bitmaps), for a converted copy of an image (Path) or for a size alone (Path null).
namespace VDisk.PowerShell;

/// <summary>The space an image of one format and option set needs.</summary>
public sealed class VDiskMeasurement
{
    /// <summary>Full path of the image measured; null when a size alone was measured.</summary>
    public string? Path { get; init; }

    /// <summary>The format measured for.</summary>
    public VDiskFormat DestinationFormat { get; init; }

    /// <summary>The virtual size of the new image, in bytes.</summary>
    public long VirtualSize { get; init; }

    /// <summary>Bytes the new file takes when written from the image (qemu-img's "required"); for a size alone, when empty.</summary>
    public long RequiredBytes { get; init; }

    /// <summary>Bytes the new file takes with every cluster allocated (qemu-img's "fully-allocated").</summary>
    public long FullyAllocatedBytes { get; init; }

    /// <summary>Bytes for the image's persistent bitmaps (qemu-img's "bitmaps": qcow2 to qcow2 version 3 only); else null.</summary>
    public long? BitmapsBytes { get; init; }
}
