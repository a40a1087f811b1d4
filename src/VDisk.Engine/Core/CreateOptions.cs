// Options for creating an image, with qemu-img create's defaults (DESIGN.md "Operations": Create).
namespace VDisk.Engine.Core;

/// <summary>What a new image should look like. Unset values take qemu-img's defaults.</summary>
public sealed record CreateOptions
{
    /// <summary>The format to write.</summary>
    public ImageFormat Format { get; init; } = ImageFormat.Qcow2;
    /// <summary>Virtual size in bytes; null takes the backing image's size.</summary>
    public long? Size { get; init; }
    /// <summary>Format variant (vmdk subformat, vdi static/dynamic).</summary>
    public ImageSubformat Subformat { get; init; } = ImageSubformat.Default;
    /// <summary>Cluster size (qcow2): a power of two from 512 B to 2 MiB.</summary>
    public int ClusterSize { get; init; } = 65536;
    /// <summary>Preallocation mode.</summary>
    public Preallocation Preallocation { get; init; } = Preallocation.Off;
    /// <summary>Full path of the backing image, or null.</summary>
    public string? BackingPath { get; init; }
    /// <summary>Store the backing path relative to the new image's folder (true) or absolute (false).</summary>
    public bool BackingPathRelative { get; init; } = true;
    /// <summary>The backing image's format; null probes it.</summary>
    public ImageFormat? BackingFormat { get; init; }
    /// <summary>Enable lazy refcounts (qcow2 v3).</summary>
    public bool LazyRefcounts { get; init; }
    /// <summary>qcow2 compatibility level as qemu-img spells it: "0.10" (version 2) or "1.1" (version 3).</summary>
    public string Compat { get; init; } = "1.1";
    /// <summary>Refcount entry width in bits: 1, 2, 4, 8, 16, 32 or 64.</summary>
    public int RefcountBits { get; init; } = 16;
    /// <summary>Compression type recorded for compressed clusters (qcow2 v3).</summary>
    public CompressionType CompressionType { get; init; } = CompressionType.Zlib;
    /// <summary>Encrypt the new image's data with LUKS (qcow2 only), slot 0 holding <see cref="Passphrase"/>; null: unencrypted.</summary>
    public Crypto.LuksFormatOptions? Encryption { get; init; }
    /// <summary>The passphrase of a new encrypted image (owned by the caller).</summary>
    public Crypto.Passphrase? Passphrase { get; init; }
}
