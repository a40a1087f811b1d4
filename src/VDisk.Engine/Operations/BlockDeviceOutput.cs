// Converting into an existing block device (qemu-img convert -O raw IMAGE /dev/sdX: restoring a backup onto a disk
// or an LVM volume). A device node cannot be replaced by a renamed temporary file, so the raw output is written in
// place: a failed or cancelled conversion leaves the device partly written. Only raw output fits a device, -Force
// is required (its old content is overwritten), and the device must hold the whole virtual size; bytes past it are
// left as they are. Ranges the source leaves unallocated or zero must read as zero on the device too: like
// qemu-img, the range is zeroed up front when the device can do that without writing every byte, and otherwise
// every byte is written (the sparse threshold is set to 0).
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Raw;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

internal static class BlockDeviceOutput
{
    /// <summary>
    /// Writes <paramref name="input"/> as raw into the block device <paramref name="device"/>, after checking that the
    /// options fit one; <paramref name="copy"/> runs the conversion pipeline with the options it should use.
    /// </summary>
    public static ConvertResult Write(VirtualDisk input, string device, ConvertOptions options,
        Func<VirtualDisk, ConvertOptions, ConvertResult> copy)
    {
        if (options.DestinationFormat != ImageFormat.Raw)
            throw new VDiskException(VDiskErrorKind.UnsupportedDestination, device,
                $"{device} is a block device: only raw output can be written into one (-DestinationFormat Raw), not {FormatProbe.Name(options.DestinationFormat)}.");
        if (!options.Overwrite)
            throw new VDiskException(VDiskErrorKind.AlreadyExists, device, $"{device} is a block device; use -Force to overwrite its content.");
        if (options.BackingPath != null)
            throw VDiskException.Invalid(device, $"{device}: raw images cannot have a backing file; use qcow2 for an overlay.");
        if (options.Preallocation != Preallocation.Off)
            throw VDiskException.Invalid(device, $"{device}: preallocation '{options.Preallocation}' does not apply to a block device, whose space is all there (use Off).");
        if (options.CacheMode.BypassesHostCache())
            throw VDiskException.Invalid(device, $"{device}: cache mode {options.CacheMode} (O_DIRECT) is not supported for a block device; use Writeback, Writethrough or Unsafe.");

        var storage = BlockDeviceStorage.Open(device, input.Length, options.CacheMode);
        using var output = new VirtualDisk(device, new RawDriver(storage), backing: null, writable: true); // owns the storage
        bool zeroed = options.SparseThreshold != 0 && storage.TryZeroQuickly();
        return copy(output, zeroed ? options : options with { SparseThreshold = 0 });
    }
}
