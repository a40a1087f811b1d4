// Resizing images (qemu-img resize; DESIGN.md "Operations": Resize). raw, qcow2 and VDI; VMDK grows when flat
// (VmdkDriver.Resize.cs) and is refused otherwise, naming the subformat (qemu-img cannot resize VMDK at all). Growing never changes what the guest reads below the old size and the
// new area reads as zeroes; shrinking must be asked for and drops what lies past the new end. For qcow2 the new size
// is the last thing written (Qcow2Image.Resize.cs), so a crash leaves the old size, at worst with leaked clusters.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Formats.Raw;
using VDisk.Engine.Formats.Vdi;
using VDisk.Engine.Formats.Vmdk;

namespace VDisk.Engine.Operations;

/// <summary>What a resize should do.</summary>
public sealed record ResizeOptions
{
    /// <summary>The new virtual size in bytes.</summary>
    public required long Size { get; init; }
    /// <summary>Allows a smaller size (qemu-img resize --shrink): the data past the new end is lost.</summary>
    public bool Shrink { get; init; }
    /// <summary>How the new area is reserved when growing (qemu-img resize --preallocation).</summary>
    public Preallocation Preallocation { get; init; } = Preallocation.Off;
    /// <summary>The image's format; null probes it.</summary>
    public ImageFormat? Format { get; init; }
}

/// <summary>What a resize did.</summary>
/// <param name="Path">Full path of the image.</param>
/// <param name="OldSize">Virtual size before, in bytes.</param>
/// <param name="NewSize">Virtual size after, in bytes.</param>
public sealed record ResizeResult(string Path, long OldSize, long NewSize);

/// <summary>Changes the virtual size of images.</summary>
public static class ResizeImage
{
    /// <summary>
    /// Resizes the image at <paramref name="path"/> to <paramref name="options"/>.Size. Progress reports bytes of the new
    /// area preallocated. Fails with InvalidArgument for a smaller size without <see cref="ResizeOptions.Shrink"/>, for
    /// preallocation while shrinking, and for sizes the format cannot take; with Unsupported for a VMDK shrink, a VMDK
    /// subformat other than monolithicFlat or twoGbMaxExtentFlat, a full VDI image whose block map has no room to move,
    /// and a version 2 qcow2 image with internal snapshots (as qemu-img).
    /// </summary>
    public static ResizeResult Run(string path, ResizeOptions options, IProgress<long>? progress = null, CancellationToken cancel = default)
    {
        path = Path.GetFullPath(path);
        long size = options.Size;
        if (size < 0 || size > CreateImage.MaxSize)
            throw VDiskException.Invalid(path, $"Size {size} is invalid: it must be from 0 to {CreateImage.MaxSize} bytes.");
        var format = options.Format ?? Probe(path);
        if (format == ImageFormat.Qcow2) return ResizeQcow2(path, options, progress, cancel);
        if (format == ImageFormat.Vmdk) CheckVmdk(path, options); // before opening for writing, which some subformats refuse
        using var driver = ImageChain.OpenFile(path, format, writable: true);
        long old = driver.VirtualSize;
        CheckDirection(path, old, options);
        switch (driver)
        {
            case RawDriver:
                RawDriver.Resize(driver.Storage, size, options.Preallocation, progress, cancel);
                break;
            case VdiDriver vdi:
                CheckSectorMultiple(path, size);
                if (size != old) vdi.Resize(size, options.Preallocation, cancel);
                break;
            case VmdkDriver vmdk:
                if (size > old) vmdk.Grow(size, options.Preallocation, progress, cancel);
                break;
            default:
                throw VDiskException.Unsupported(path, $"resizing {FormatProbe.Name(format)} images is not supported.");
        }
        return new ResizeResult(path, old, size);
    }

    private static ResizeResult ResizeQcow2(string path, ResizeOptions options, IProgress<long>? progress, CancellationToken cancel)
    {
        using var disk = ImageChain.Open(path, new OpenOptions { Writable = true, Format = ImageFormat.Qcow2 });
        var driver = (Qcow2Driver)disk.Driver;
        long old = disk.Length, size = options.Size;
        CheckDirection(path, old, options);
        CheckSectorMultiple(path, size);
        if (driver.Header.SnapshotCount > 0 && driver.Header.Version < 3)
            throw VDiskException.Unsupported(path, "a version 2 (compat 0.10) qcow2 image with internal snapshots cannot be resized: its snapshots do not record their own size (qemu-img refuses it too). Delete the snapshots first.");
        if (size == old) return new ResizeResult(path, old, size);
        bool backingShowsThrough = disk.Backing is { } below && below.Length > old;
        driver.Resize(size, options.Preallocation, backingShowsThrough, progress, cancel);
        // The rest of the cluster the old end falls in, where the driver could not zero it in place (shared with a
        // snapshot, compressed, or the backing file's data showing through).
        long cluster = driver.ClusterSize, tail = Math.Min(size, (old + cluster - 1) / cluster * cluster) - old;
        if (tail > 0 && disk.GetBlockStatus(old, tail) is { Kind: ExtentKind.Data } && !ReadsZero(disk, old, tail))
            disk.WriteZeroes(old, tail, unmap: false);
        return new ResizeResult(path, old, size);
    }

    private static void CheckVmdk(string path, ResizeOptions options)
    {
        using var vmdk = (VmdkDriver)ImageChain.OpenFile(path, ImageFormat.Vmdk, writable: false);
        CheckDirection(path, vmdk.VirtualSize, options);
        CheckSectorMultiple(path, options.Size);
        if (options.Size < vmdk.VirtualSize)
            throw VDiskException.Unsupported(path, $"{path}: VMDK images cannot be shrunk (this one is {vmdk.CreateType}; qemu-img cannot resize VMDK at all). Convert it to qcow2 or raw (Convert-VDisk), shrink that, and convert back if VMware needs it.");
        if (options.Size > vmdk.VirtualSize) vmdk.CheckCanGrow(options.Size);
    }

    private static bool ReadsZero(VirtualDisk disk, long offset, long length)
    {
        var bytes = new byte[length];
        disk.Read(offset, bytes);
        return bytes.AsSpan().IndexOfAnyExcept((byte)0) < 0;
    }

    private static void CheckDirection(string path, long old, ResizeOptions options)
    {
        if (options.Size >= old) return;
        if (!options.Shrink)
            throw VDiskException.Invalid(path, $"{path}: {options.Size} bytes is smaller than the image ({old} bytes); shrinking deletes the data past the new end, so it must be asked for (-Shrink).");
        if (options.Preallocation != Preallocation.Off)
            throw VDiskException.Invalid(path, $"{path}: preallocation can only be used when growing an image.");
    }

    private static void CheckSectorMultiple(string path, long size)
    {
        if (size % 512 != 0)
            throw VDiskException.Invalid(path, $"{path}: the new size must be a multiple of 512 bytes ({size} is not).");
    }

    private static ImageFormat Probe(string path)
    {
        using var driver = ImageChain.OpenFile(path, null, writable: false, forceShare: true);
        return driver.Format;
    }
}
