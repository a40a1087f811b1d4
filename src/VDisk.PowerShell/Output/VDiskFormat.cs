// The image formats as cmdlet parameters and output properties name them, and the mapping to the engine's
// ImageFormat. A PowerShell-facing enum keeps tab completion stable while the engine grows.
using VDisk.Engine.Core;

namespace VDisk.PowerShell;

/// <summary>A disk image format.</summary>
public enum VDiskFormat
{
    /// <summary>A plain byte-for-byte disk (.raw, .img).</summary>
    Raw,
    /// <summary>QEMU copy-on-write, versions 2 and 3 (.qcow2).</summary>
    Qcow2,
    /// <summary>VMware virtual disk (.vmdk).</summary>
    Vmdk,
    /// <summary>VirtualBox disk image (.vdi).</summary>
    Vdi,
}

/// <summary>Conversions between <see cref="VDiskFormat"/> and the engine's <see cref="ImageFormat"/>.</summary>
internal static class VDiskFormatConversion
{
    public static ImageFormat ToEngine(this VDiskFormat format) => format switch
    {
        VDiskFormat.Raw => ImageFormat.Raw,
        VDiskFormat.Qcow2 => ImageFormat.Qcow2,
        VDiskFormat.Vmdk => ImageFormat.Vmdk,
        VDiskFormat.Vdi => ImageFormat.Vdi,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, null),
    };

    public static VDiskFormat ToVDiskFormat(this ImageFormat format) => format switch
    {
        ImageFormat.Raw => VDiskFormat.Raw,
        ImageFormat.Qcow2 => VDiskFormat.Qcow2,
        ImageFormat.Vmdk => VDiskFormat.Vmdk,
        ImageFormat.Vdi => VDiskFormat.Vdi,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, null),
    };

    /// <summary>The extension a converted image of this format is given when no destination is named: .raw, .qcow2, .vmdk, .vdi.</summary>
    public static string Extension(this VDiskFormat format) => "." + format.ToString().ToLowerInvariant();

    /// <summary>The format a new file's extension suggests: .raw/.img raw, .vmdk vmdk, .vdi vdi, anything else qcow2.</summary>
    public static VDiskFormat FromExtension(string path) => System.IO.Path.GetExtension(path).ToLowerInvariant() switch
    {
        ".raw" or ".img" => VDiskFormat.Raw,
        ".vmdk" => VDiskFormat.Vmdk,
        ".vdi" => VDiskFormat.Vdi,
        _ => VDiskFormat.Qcow2,
    };
}
