// Growing a flat VMDK image (VMware Virtual Disk Format 1.1, "The Descriptor File": extent descriptions and the
// ddb.geometry keys). QEMU 7.2 cannot resize VMDK images at all. VDisk grows monolithicFlat images, and
// twoGbMaxExtentFlat ones while the last extent stays within 2 GiB: the last extent file is extended first (and
// flushed), then the descriptor's extent line and ddb.geometry.cylinders are rewritten, so a crash leaves the old size
// with a longer extent file, which nothing reads. Sparse, streamOptimized and every other subformat, and every shrink,
// are refused with the subformat named.
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Vmdk;

public sealed partial class VmdkDriver
{
    /// <summary>Largest extent of a twoGbMaxExtentFlat image (QEMU's split extents are 2 GiB).</summary>
    private const long MaxSplitExtentBytes = 2L << 30;

    /// <summary>
    /// Grows the disk to <paramref name="size"/> bytes (a whole number of sectors, larger than now); the new area is
    /// reserved as <paramref name="mode"/> asks (Off, Falloc or Full). Throws Unsupported for subformats that cannot grow.
    /// </summary>
    internal void Grow(long size, Preallocation mode, IProgress<long>? progress, CancellationToken cancel)
    {
        if (!_writable) throw new VDiskException(VDiskErrorKind.ReadOnly, Storage.Name, $"{Storage.Name} is open read-only.");
        var last = (VmdkFlatExtent)_extents[^1];
        CheckCanGrow(size);
        var line = _layout.Descriptor.Extents[^1];
        long extentBytes = last.Length + (size - VirtualSize);
        if (mode is not (Preallocation.Off or Preallocation.Falloc or Preallocation.Full))
            throw VDiskException.Invalid(Storage.Name, $"{Storage.Name}: preallocation '{mode}' is not valid for a flat VMDK image (use Off, Falloc or Full).");
        Raw.RawDriver.Resize(last.Storage, line.FlatOffset * VmdkSparseHeader.SectorSize + extentBytes, mode, progress, cancel);
        last.Storage.Flush(); // the extent holds the new sectors before the descriptor counts them

        string adapter = _layout.Descriptor.Ddb.GetValueOrDefault("ddb.adapterType", "ide");
        var text = System.Text.Encoding.UTF8.GetBytes(_layout.Descriptor.WithLastExtentSectors(
            extentBytes / VmdkSparseHeader.SectorSize, VmdkDescriptor.Geometry(size, adapter).Cylinders));
        Storage.WriteAt(0, text);
        Storage.SetLength(text.Length);
        Storage.Flush();
    }

    /// <summary>Throws Unsupported, naming the subformat, when this image cannot grow to <paramref name="size"/> bytes.</summary>
    internal void CheckCanGrow(long size)
    {
        string type = CreateType;
        if (type is not ("monolithicFlat" or "twoGbMaxExtentFlat") || _extents[^1] is not VmdkFlatExtent last)
            throw VDiskException.Unsupported(Storage.Name,
                $"{Storage.Name}: VMDK images of subformat {type} cannot be grown (VDisk grows monolithicFlat and twoGbMaxExtentFlat; qemu-img cannot resize VMDK at all). Convert it to qcow2 or raw (Convert-VDisk), resize that, and convert back if VMware needs it.");
        long extentBytes = last.Length + (size - VirtualSize);
        if (type == "twoGbMaxExtentFlat" && extentBytes > MaxSplitExtentBytes)
            throw VDiskException.Unsupported(Storage.Name,
                $"{Storage.Name}: growing this twoGbMaxExtentFlat image to {size} bytes would make its last extent {extentBytes} bytes, past the subformat's {MaxSplitExtentBytes}-byte extents; VDisk does not add extents. Convert it to a monolithicFlat VMDK or to qcow2 (Convert-VDisk) to grow it further.");
    }
}
