// The consistency check the power-loss and core tests apply to a qcow2 image: no corruption (leaks allowed). An image
// left dirty (lazy refcounts, or a snapshot operation cut short) is first repaired as QEMU would on open, with our own
// repair (what Test-VDisk -Repair All runs), which must accept it and leave it clean.
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Tests.Support;

internal static class Qcow2Consistency
{
    /// <summary>Null when the image is consistent (after a repair if it was dirty), else why not; and the image to read from.</summary>
    public static (string? Failure, byte[] Bytes) Check(string name, byte[] bytes)
    {
        Qcow2CheckReport report;
        try
        {
            report = Qcow2Check.Run(new MemoryStorage(name, bytes, canWrite: false));
        }
        catch (VDiskException e)
        {
            return ($"check failed: {e.Message}", bytes);
        }
        if (!report.Dirty) return (report.Corruptions > 0 ? $"corruption: {string.Join("; ", report.Problems.Take(3))}" : null, bytes);
        if (report.Unrepairable.Count > 0) return ($"dirty and not repairable: {string.Join("; ", report.Unrepairable.Take(3))}", bytes);
        var storage = new MemoryStorage(name, bytes);
        Qcow2Image.CheckAndRepair(storage, repair: true, all: true);
        var repaired = storage.ToArray();
        var after = Qcow2Check.Run(new MemoryStorage(name, repaired, canWrite: false));
        if (!after.IsClean || after.Dirty)
            return ($"after repair: {after.Corruptions} corruption(s), {after.Leaks} leak(s), dirty {after.Dirty}: {string.Join("; ", after.Problems.Take(3))}", bytes);
        return (null, repaired);
    }
}
