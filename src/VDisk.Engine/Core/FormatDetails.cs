// Format-specific facts a driver reports for `Get-VDisk` / `qemu-img info` (DESIGN.md "Core").
using VDisk.Engine.Formats.Qcow2;

namespace VDisk.Engine.Core;

/// <summary>Compression algorithms for compressed clusters.</summary>
public enum CompressionType
{
    /// <summary>Deflate: raw deflate in qcow2 (compression type 0), zlib-wrapped in VMDK streamOptimized grains.</summary>
    Zlib,
    /// <summary>Zstandard frames (qcow2 compression type 1).</summary>
    Zstd,
}

/// <summary>Facts that only some formats have; null where a format has no such notion.</summary>
public sealed record FormatDetails
{
    /// <summary>Format version as qemu-img names it: "0.10" or "1.1" for qcow2, version numbers elsewhere.</summary>
    public string? Compat { get; init; }
    /// <summary>Cluster (grain, block) size in bytes.</summary>
    public int? ClusterSize { get; init; }
    /// <summary>Refcount entry width (qcow2).</summary>
    public int? RefcountBits { get; init; }
    /// <summary>Lazy refcounts enabled (qcow2 v3).</summary>
    public bool? LazyRefcounts { get; init; }
    /// <summary>Compression type for compressed clusters.</summary>
    public CompressionType? CompressionType { get; init; }
    /// <summary>Refcounts may be stale (qcow2 dirty bit).</summary>
    public bool Dirty { get; init; }
    /// <summary>Marked corrupt: writes are refused.</summary>
    public bool Corrupt { get; init; }
    /// <summary>Data is encrypted.</summary>
    public bool Encrypted { get; init; }
    /// <summary>How the data is encrypted ("luks", or "aes" for qcow2's legacy method), as qemu-img info's encrypt.format.</summary>
    public string? EncryptionFormat { get; init; }
    /// <summary>The LUKS cipher, as "aes-256-xts-plain64" (null for legacy AES and unencrypted images).</summary>
    public string? Cipher { get; init; }
    /// <summary>The LUKS key slots that hold a passphrase.</summary>
    public IReadOnlyList<int> ActiveKeySlots { get; init; } = Array.Empty<int>();
    /// <summary>Internal snapshots stored in the image.</summary>
    public int SnapshotCount { get; init; }
    /// <summary>Subformat (vmdk createType, vdi dynamic/static).</summary>
    public string? Subformat { get; init; }
    /// <summary>Persistent dirty bitmaps (qcow2 v3), as qemu-img info's format-specific "bitmaps".</summary>
    public IReadOnlyList<Qcow2BitmapInfo> Bitmaps { get; init; } = Array.Empty<Qcow2BitmapInfo>();
    /// <summary>Feature names set in the image that this version does not interpret but preserves.</summary>
    public IReadOnlyList<string> UnknownFeatures { get; init; } = Array.Empty<string>();
}
