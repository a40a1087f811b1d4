// What Get-VDisk and New-VDisk write to the pipeline: the facts `qemu-img info` reports, as an object.
// Sizes are bytes; the table view in VDisk.format.ps1xml shows them for people.
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell;

/// <summary>Information about one disk image.</summary>
public sealed class VDiskInfo
{
    /// <summary>Full path of the image file.</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>The image format, recognised by its magic bytes.</summary>
    public VDiskFormat Format { get; init; }

    /// <summary>Size of the disk the guest sees, in bytes.</summary>
    public long VirtualSize { get; init; }

    /// <summary>Bytes the image's files occupy on the host (sparse holes do not count).</summary>
    public long FileSize { get; init; }

    /// <summary>Apparent length of the image's files in bytes.</summary>
    public long FileLength { get; init; }

    /// <summary>Cluster (grain, block) size in bytes, where the format has one.</summary>
    public int? ClusterSize { get; init; }

    /// <summary>The backing file name exactly as stored in the image (may be relative to the image's folder).</summary>
    public string? BackingPath { get; init; }

    /// <summary>The backing file name resolved against the image's folder.</summary>
    public string? BackingFullPath { get; init; }

    /// <summary>The backing format recorded in the image, or null when none is recorded.</summary>
    public VDiskFormat? BackingFormat { get; init; }

    /// <summary>Format version as qemu-img names it: "0.10" or "1.1" for qcow2.</summary>
    public string? Compat { get; init; }

    /// <summary>True when the image was not closed cleanly and its refcounts may be stale (qcow2).</summary>
    public bool Dirty { get; init; }

    /// <summary>True when the image is marked corrupt; it cannot be written until repaired.</summary>
    public bool Corrupt { get; init; }

    /// <summary>Whether lazy refcounts are enabled (qcow2 version 3), or null where not applicable.</summary>
    public bool? LazyRefcounts { get; init; }

    /// <summary>Refcount entry width in bits (qcow2).</summary>
    public int? RefcountBits { get; init; }

    /// <summary>Compression used for compressed clusters (qcow2 version 3).</summary>
    public CompressionType? CompressionType { get; init; }

    /// <summary>True when the image's data is encrypted.</summary>
    public bool Encrypted { get; init; }

    /// <summary>How the data is encrypted: Luks, or Aes (qcow2's legacy method, read-only); null when not encrypted.</summary>
    public string? EncryptionFormat { get; init; }

    /// <summary>The LUKS cipher, e.g. aes-256-xts-plain64.</summary>
    public string? Cipher { get; init; }

    /// <summary>The LUKS key slots that hold a passphrase (0 to 7).</summary>
    public int[] KeySlots { get; init; } = Array.Empty<int>();

    /// <summary>Number of internal snapshots stored in the image.</summary>
    public int SnapshotCount { get; init; }

    /// <summary>Persistent dirty bitmaps stored in the image (qcow2 version 3), as qemu-img info lists them.</summary>
    public VDiskBitmap[] Bitmaps { get; init; } = Array.Empty<VDiskBitmap>();

    /// <summary>Number of backing images beneath this one that could be opened (0 for a standalone image).</summary>
    public int ChainDepth { get; init; }

    /// <summary>The format variant (vmdk createType, vdi dynamic or static), where the format has one.</summary>
    public string? Subformat { get; init; }

    /// <summary>Feature names set in the image that this version does not interpret but preserves.</summary>
    public string[] UnknownFeatures { get; init; } = Array.Empty<string>();

    internal static VDiskInfo From(ImageInfo info) => new()
    {
        Path = info.Path,
        Format = info.Format.ToVDiskFormat(),
        VirtualSize = info.VirtualSize,
        FileSize = info.FileSize,
        FileLength = info.FileLength,
        ClusterSize = info.Details.ClusterSize,
        BackingPath = info.BackingPath,
        BackingFullPath = info.BackingFullPath,
        BackingFormat = info.BackingFormat?.ToVDiskFormat(),
        Compat = info.Details.Compat,
        Dirty = info.Details.Dirty,
        Corrupt = info.Details.Corrupt,
        LazyRefcounts = info.Details.LazyRefcounts,
        RefcountBits = info.Details.RefcountBits,
        CompressionType = info.Details.CompressionType,
        Encrypted = info.Details.Encrypted,
        EncryptionFormat = info.Details.EncryptionFormat switch { "luks" => "Luks", "aes" => "Aes", _ => null },
        Cipher = info.Details.Cipher,
        KeySlots = info.Details.ActiveKeySlots.ToArray(),
        SnapshotCount = info.Details.SnapshotCount,
        Bitmaps = info.Details.Bitmaps.Select(VDiskBitmap.From).ToArray(),
        ChainDepth = info.ChainDepth,
        Subformat = info.Details.Subformat,
        UnknownFeatures = info.Details.UnknownFeatures.ToArray(),
    };
}
