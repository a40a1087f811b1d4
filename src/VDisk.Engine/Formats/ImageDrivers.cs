// Maps a format to its driver (DESIGN.md "Formats": one folder per format).
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Formats.Raw;
using VDisk.Engine.Formats.Vdi;
using VDisk.Engine.Formats.Vmdk;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats;

/// <summary>Opens the right driver for a format.</summary>
public static class ImageDrivers
{
    /// <summary>
    /// Opens <paramref name="storage"/> as <paramref name="format"/>. The driver owns the storage. With
    /// <paramref name="confineReferences"/> (a probed VMDK), the files the image names must lie in its own folder.
    /// </summary>
    public static IImageDriver Open(IStorage storage, ImageFormat format, bool writable, bool confineReferences = false) => format switch
    {
        ImageFormat.Raw => new RawDriver(storage),
        ImageFormat.Qcow2 => Qcow2Driver.Open(storage, writable),
        ImageFormat.Vdi => VdiDriver.Open(storage, writable),
        ImageFormat.Vmdk => VmdkDriver.Open(storage, writable, confineReferences),
        _ => throw VDiskException.Unsupported(storage.Name, $"the {FormatProbe.Name(format)} format is not supported yet."),
    };

    /// <summary>Opens the state of an internal snapshot, read-only (qcow2 only).</summary>
    public static IImageDriver OpenSnapshot(IStorage storage, ImageFormat format, string idOrName) => format == ImageFormat.Qcow2
        ? Qcow2Driver.OpenSnapshot(storage, idOrName)
        : throw VDiskException.Invalid(storage.Name, $"{storage.Name}: {FormatProbe.Name(format)} images have no internal snapshots.");
}
