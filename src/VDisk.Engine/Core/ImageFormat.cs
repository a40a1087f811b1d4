// Image formats and the guest-range mapping vocabulary every driver speaks (DESIGN.md "Core").
using VDisk.Engine.Storage;

namespace VDisk.Engine.Core;

/// <summary>The on-disk image formats VDisk knows.</summary>
public enum ImageFormat
{
    /// <summary>A plain byte-for-byte disk.</summary>
    Raw,
    /// <summary>QEMU copy-on-write v2/v3.</summary>
    Qcow2,
    /// <summary>VMware virtual disk.</summary>
    Vmdk,
    /// <summary>VirtualBox disk image.</summary>
    Vdi,
}

/// <summary>What a guest range holds, as its driver sees it.</summary>
public enum ExtentKind
{
    /// <summary>Stored uncompressed at a host offset.</summary>
    Data,
    /// <summary>Reads as zeroes whatever the backing image holds.</summary>
    Zero,
    /// <summary>Not stored in this layer: reads from the backing image, or zeroes without one.</summary>
    Unallocated,
    /// <summary>Stored in a form only the driver can read (compressed).</summary>
    Compressed,
}

/// <summary>
/// The answer to "where is guest range [offset, offset+Length)?": one kind for the whole run and, for
/// <see cref="ExtentKind.Data"/>, a contiguous host range in <see cref="Storage"/>.
/// </summary>
/// <param name="Kind">What the range holds.</param>
/// <param name="Length">Bytes covered, at least 1.</param>
/// <param name="Storage">Host file of the range (Data, and any run that is <paramref name="Writable"/>).</param>
/// <param name="HostOffset">Host offset of the first byte.</param>
/// <param name="Writable">True when guest writes may go straight to the host range, whatever its kind (raw holes are).</param>
public readonly record struct Mapping(ExtentKind Kind, long Length, IStorage? Storage = null, long HostOffset = 0, bool Writable = false);

/// <summary>Host space a driver reserved for a guest range, not yet linked into its tables.</summary>
/// <param name="Storage">The file the space is in.</param>
/// <param name="Offset">Host offset of the first byte.</param>
/// <param name="Length">Bytes reserved, a whole number of clusters.</param>
public readonly record struct HostRun(IStorage Storage, long Offset, long Length);

/// <summary>The backing image an overlay names.</summary>
/// <param name="Path">The path exactly as stored in the image (may be relative to the image's folder).</param>
/// <param name="Format">The recorded backing format, or null when the image does not record one.</param>
public sealed record BackingReference(string Path, ImageFormat? Format)
{
    /// <summary>
    /// True when the backing file must lie in the image's own folder: the name comes from a VMDK descriptor whose
    /// format was probed, not declared, so it may be text a guest wrote (see FormatProbe).
    /// </summary>
    public bool ConfinedToFolder { get; init; }
}
