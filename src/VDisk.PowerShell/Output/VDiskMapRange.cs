// What Get-VDiskMap writes: one range of an image's allocation map (qemu-img map --output=json: start, length, depth,
// present, zero, data, offset), with the image's Path so ranges group and bind by image.
using VDisk.Engine.Operations;

namespace VDisk.PowerShell;

/// <summary>One range of a disk image's allocation map.</summary>
public sealed class VDiskMapRange
{
    /// <summary>Full path of the image mapped (the top of its chain).</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>Guest offset of the first byte of the range.</summary>
    public long Start { get; init; }

    /// <summary>Bytes in the range.</summary>
    public long Length { get; init; }

    /// <summary>Guest offset just past the range (Start + Length).</summary>
    public long End => Start + Length;

    /// <summary>The layer of the backing chain that decides the content: 0 is the image itself, 1 its backing file, ...</summary>
    public int Depth { get; init; }

    /// <summary>That layer holds the range (qemu-img's "present"); false where nothing does and it reads as zeroes.</summary>
    public bool Present { get; init; }

    /// <summary>The range holds data (qemu-img's "data").</summary>
    public bool Data { get; init; }

    /// <summary>The range reads as zeroes (qemu-img's "zero").</summary>
    public bool Zero { get; init; }

    /// <summary>The data is stored compressed (qcow2 compressed clusters, streamOptimized VMDK grains).</summary>
    public bool Compressed { get; init; }

    /// <summary>Where the bytes are in <see cref="File"/> (qemu-img's "offset"), when stored plainly; else null.</summary>
    public long? HostOffset { get; init; }

    /// <summary>The file holding the bytes at <see cref="HostOffset"/>; null without an offset.</summary>
    public string? File { get; init; }

    internal static VDiskMapRange From(string path, MapRange r) => new()
    {
        Path = path,
        Start = r.Start,
        Length = r.Length,
        Depth = r.Depth,
        Present = r.Present,
        Data = r.Data,
        Zero = r.Zero,
        Compressed = r.Compressed,
        HostOffset = r.Offset,
        File = r.File,
    };
}
