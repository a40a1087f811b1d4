// Snapshots of an image (qemu-img snapshot -l/-c/-a/-d; DESIGN.md "Operations"): internal snapshots of a qcow2
// image, made by the metadata core (Qcow2Snapshots), and external ones, a new qcow2 overlay over the image.
// Listing reads without locks, like qemu-img snapshot -l -U; every change locks the image as QEMU does, so a
// running VM's disk is refused (ImageInUse) instead of being changed under it.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;

namespace VDisk.Engine.Operations;

/// <summary>One internal snapshot of an image.</summary>
/// <param name="Path">The image's full path.</param>
/// <param name="Id">The snapshot's id (unique in the image).</param>
/// <param name="Name">Its name (names may repeat, as qemu-img allows).</param>
/// <param name="Created">When it was taken (UTC).</param>
/// <param name="VmClock">The guest clock when it was taken (zero for a disk-only snapshot).</param>
/// <param name="VmStateSize">Bytes of saved VM state (RAM, devices) stored with it.</param>
/// <param name="DiskSize">The virtual size it records; applying it restores that size.</param>
public sealed record SnapshotInfo(string Path, string Id, string Name, DateTime Created, TimeSpan VmClock, long VmStateSize, long DiskSize);

/// <summary>Lists, takes, applies and deletes snapshots.</summary>
public static class SnapshotImage
{
    /// <summary>The internal snapshots of the image at <paramref name="path"/>, in table order.</summary>
    public static IReadOnlyList<SnapshotInfo> List(string path)
    {
        path = Path.GetFullPath(path);
        using var driver = OpenQcow2(path, writable: false);
        return driver.Snapshots.Select(s => Info(path, s)).ToList();
    }

    /// <summary>Takes an internal snapshot named <paramref name="name"/> of the image's current state.</summary>
    public static SnapshotInfo Create(string path, string name)
    {
        path = Path.GetFullPath(path);
        using var driver = OpenQcow2(path, writable: true);
        return Info(path, driver.Image.CreateSnapshot(name, DateTime.UtcNow));
    }

    /// <summary>Reverts the image to the snapshot with id <paramref name="id"/> (its data and its virtual size).</summary>
    public static SnapshotInfo Apply(string path, string id)
    {
        path = Path.GetFullPath(path);
        using var driver = OpenQcow2(path, writable: true);
        var snapshot = ById(driver, id, path);
        driver.Image.ApplySnapshot(snapshot);
        return Info(path, snapshot);
    }

    /// <summary>Deletes the snapshot with id <paramref name="id"/> and gives back the clusters only it used.</summary>
    public static SnapshotInfo Delete(string path, string id)
    {
        path = Path.GetFullPath(path);
        using var driver = OpenQcow2(path, writable: true);
        var snapshot = ById(driver, id, path);
        driver.Image.DeleteSnapshot(snapshot);
        return Info(path, snapshot);
    }

    /// <summary>
    /// Takes an external snapshot: a new qcow2 overlay at <paramref name="overlayPath"/> backed by the image (stored
    /// relative to the overlay's folder, with its format), which then takes the writes while the image stays as it is.
    /// </summary>
    public static CreateResult CreateExternal(string path, string overlayPath, bool overwrite, CancellationToken cancel = default)
    {
        path = Path.GetFullPath(path);
        ImageFormat format;
        using (var image = ImageChain.OpenFile(path, null, writable: false)) format = image.Format;
        return CreateImage.Run(overlayPath, new CreateOptions { Format = ImageFormat.Qcow2, BackingPath = path, BackingFormat = format }, overwrite, cancel: cancel);
    }

    private static Qcow2Driver OpenQcow2(string path, bool writable)
    {
        var driver = ImageChain.OpenFile(path, null, writable, forceShare: !writable);
        if (driver is Qcow2Driver qcow2) return qcow2;
        var format = driver.Format;
        driver.Dispose();
        throw VDiskException.Unsupported(path, $"internal snapshots need a qcow2 image, and this is {FormatProbe.Name(format)}; take an external snapshot (an overlay) instead.");
    }

    private static Qcow2Snapshot ById(Qcow2Driver driver, string id, string path)
        => driver.Snapshots.FirstOrDefault(s => s.Id == id)
           ?? throw new VDiskException(VDiskErrorKind.SnapshotNotFound, path, $"{path}: no internal snapshot with id '{id}'.");

    private static SnapshotInfo Info(string path, Qcow2Snapshot s)
        => new(path, s.Id, s.Name, s.Created, TimeSpan.FromTicks((long)Math.Min(s.VmClockNanoseconds / 100, long.MaxValue)), s.VmStateSize, s.DiskSize);
}
