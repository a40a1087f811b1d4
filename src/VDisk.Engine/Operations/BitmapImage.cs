// Persistent dirty bitmaps of a qcow2 image by path (qemu-img bitmap --add/--remove/--clear, qemu-img info's
// bitmaps; the metadata core does the work in Qcow2Bitmaps.cs). Listing and reading take no locks, like
// qemu-img info -U; every change locks the image as QEMU does, so a running VM's disk is refused (ImageInUse).
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;

namespace VDisk.Engine.Operations;

/// <summary>Lists, reads, adds, removes and clears the persistent dirty bitmaps of a qcow2 image.</summary>
public static class BitmapImage
{
    /// <summary>The bitmaps of the image at <paramref name="path"/> (none for other formats and version 2 images).</summary>
    public static IReadOnlyList<Qcow2BitmapInfo> List(string path)
    {
        using var driver = ImageChain.OpenFile(Path.GetFullPath(path), null, writable: false, forceShare: true);
        return driver is Qcow2Driver qcow2 ? qcow2.Bitmaps : Array.Empty<Qcow2BitmapInfo>();
    }

    /// <summary>The qcow2 version of the image at <paramref name="path"/> (only version 3 holds bitmaps), or null for other formats.</summary>
    public static int? Qcow2Version(string path)
    {
        using var driver = ImageChain.OpenFile(Path.GetFullPath(path), null, writable: false, forceShare: true);
        return driver is Qcow2Driver qcow2 ? qcow2.Header.Version : null;
    }

    /// <summary>
    /// The guest ranges the bitmap <paramref name="name"/> marks dirty (see <see cref="Qcow2Driver.ReadBitmap"/>). The
    /// image stays open until the enumeration ends or its enumerator is disposed; a missing or untrusted bitmap is an
    /// error at once.
    /// </summary>
    public static IEnumerable<DirtyRange> Read(string path, string name)
    {
        var driver = OpenQcow2(Path.GetFullPath(path), writable: false);
        IEnumerable<DirtyRange> ranges;
        try
        {
            ranges = driver.ReadBitmap(name);
        }
        catch
        {
            driver.Dispose();
            throw;
        }
        return Enumerate(driver, ranges);
    }

    /// <summary>
    /// Adds an empty, enabled persistent bitmap (see <see cref="Qcow2Image.AddBitmap"/>); without
    /// <paramref name="granularity"/>, QEMU's default: the cluster size, at least 4 KiB and at most 64 KiB.
    /// </summary>
    public static Qcow2BitmapInfo Add(string path, string name, long? granularity = null)
    {
        using var driver = OpenQcow2(Path.GetFullPath(path), writable: true);
        return driver.Image.AddBitmap(name, granularity);
    }

    /// <summary>Removes a bitmap and gives back its clusters.</summary>
    public static void Remove(string path, string name)
    {
        using var driver = OpenQcow2(Path.GetFullPath(path), writable: true);
        driver.Image.RemoveBitmap(name);
    }

    /// <summary>Empties a bitmap so it tracks changes from now on (see <see cref="Qcow2Image.ClearBitmap"/>).</summary>
    public static Qcow2BitmapInfo Clear(string path, string name)
    {
        using var driver = OpenQcow2(Path.GetFullPath(path), writable: true);
        return driver.Image.ClearBitmap(name);
    }

    private static IEnumerable<DirtyRange> Enumerate(Qcow2Driver driver, IEnumerable<DirtyRange> ranges)
    {
        using (driver)
            foreach (var range in ranges) yield return range;
    }

    private static Qcow2Driver OpenQcow2(string path, bool writable)
    {
        var driver = ImageChain.OpenFile(path, null, writable, forceShare: !writable);
        if (driver is Qcow2Driver qcow2) return qcow2;
        var format = driver.Format;
        driver.Dispose();
        throw VDiskException.Unsupported(path, $"persistent dirty bitmaps need a qcow2 image, and this is {FormatProbe.Name(format)}.");
    }
}
