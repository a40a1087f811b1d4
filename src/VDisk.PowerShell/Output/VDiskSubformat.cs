// The format variants as cmdlet parameters name them (qemu-img create -o subformat=... for VMDK, static=on for
// VDI), which format each belongs to, and the mapping to the engine's ImageSubformat.
using VDisk.Engine.Core;

namespace VDisk.PowerShell;

/// <summary>A variant of a disk image format.</summary>
public enum VDiskSubformat
{
    /// <summary>VMDK: one sparse file with an embedded descriptor (qemu-img's default for VMDK).</summary>
    MonolithicSparse,
    /// <summary>VMDK: a descriptor file plus one flat (raw) extent file.</summary>
    MonolithicFlat,
    /// <summary>VMDK: a descriptor file plus sparse extents of at most 2 GiB each.</summary>
    TwoGbMaxExtentSparse,
    /// <summary>VMDK: a descriptor file plus flat extents of at most 2 GiB each.</summary>
    TwoGbMaxExtentFlat,
    /// <summary>VMDK: compressed grains written in one pass, for ESXi and OVA import.</summary>
    StreamOptimized,
    /// <summary>VDI: blocks allocated on first write (the default for VDI).</summary>
    Dynamic,
    /// <summary>VDI: every block allocated when the image is created.</summary>
    Static,
}

/// <summary>Conversions between <see cref="VDiskSubformat"/> and the engine's <see cref="ImageSubformat"/>.</summary>
internal static class VDiskSubformatConversion
{
    public static ImageSubformat ToEngine(this VDiskSubformat subformat) => subformat switch
    {
        VDiskSubformat.MonolithicSparse => ImageSubformat.MonolithicSparse,
        VDiskSubformat.MonolithicFlat => ImageSubformat.MonolithicFlat,
        VDiskSubformat.TwoGbMaxExtentSparse => ImageSubformat.TwoGbMaxExtentSparse,
        VDiskSubformat.TwoGbMaxExtentFlat => ImageSubformat.TwoGbMaxExtentFlat,
        VDiskSubformat.StreamOptimized => ImageSubformat.StreamOptimized,
        VDiskSubformat.Dynamic => ImageSubformat.Dynamic,
        VDiskSubformat.Static => ImageSubformat.Static,
        _ => throw new ArgumentOutOfRangeException(nameof(subformat), subformat, null),
    };

    /// <summary>The format that has this variant: Dynamic and Static are VDI's, the rest VMDK's.</summary>
    public static VDiskFormat FormatOf(this VDiskSubformat subformat) =>
        subformat is VDiskSubformat.Dynamic or VDiskSubformat.Static ? VDiskFormat.Vdi : VDiskFormat.Vmdk;

    /// <summary>Why <paramref name="subformat"/> cannot be used for a <paramref name="format"/> image, or null when it can.</summary>
    public static string? MismatchWith(this VDiskSubformat subformat, VDiskFormat format) => subformat.FormatOf() == format
        ? null
        : $"-Subformat {subformat} is a {subformat.FormatOf()} variant; it does not apply to {format} images.";
}
