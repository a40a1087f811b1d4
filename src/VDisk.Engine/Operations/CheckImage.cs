// Checking and repairing an image (qemu-img check [-r leaks|all]; DESIGN.md "Operations"). qcow2: the metadata core's
// check (Qcow2Check) and repair (Qcow2Repair), on a file opened with QEMU's locks, so an image a VM has open is not
// repaired under it. A repair is refused, with nothing written, when the check finds damage it cannot fix safely.
// VMDK and VDI: read-only checks of their tables (VmdkCheck, VdiCheck). Raw images have no metadata to check.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Formats.Vdi;
using VDisk.Engine.Formats.Vmdk;

namespace VDisk.Engine.Operations;

/// <summary>What a check may repair (qemu-img check -r).</summary>
public enum RepairMode
{
    /// <summary>Only check.</summary>
    None,
    /// <summary>Lower the refcounts of leaked clusters (-r leaks).</summary>
    Leaks,
    /// <summary>Also raise refcounts lower than their references, fix COPIED flags and clear the dirty bit (-r all).</summary>
    All,
}

/// <summary>The outcome of a check, after any repair, in qemu-img check's terms.</summary>
public sealed record CheckResult
{
    /// <summary>Full path of the image.</summary>
    public required string Path { get; init; }
    /// <summary>Its format.</summary>
    public required ImageFormat Format { get; init; }
    /// <summary>Problems that could lose data.</summary>
    public long Corruptions { get; init; }
    /// <summary>Clusters counted as used that nothing references (space lost, data safe).</summary>
    public long Leaks { get; init; }
    /// <summary>Structures that could not be checked.</summary>
    public long CheckErrors { get; init; }
    /// <summary>Corruptions a repair fixed.</summary>
    public long CorruptionsFixed { get; init; }
    /// <summary>Leaks a repair fixed.</summary>
    public long LeaksFixed { get; init; }
    /// <summary>qcow2: one past the last host byte in use.</summary>
    public long? ImageEndOffset { get; init; }
    /// <summary>qcow2: the virtual size in clusters.</summary>
    public long? TotalClusters { get; init; }
    /// <summary>qcow2: guest clusters with data of their own.</summary>
    public long? AllocatedClusters { get; init; }
    /// <summary>qcow2: allocated clusters not stored right after the previous one.</summary>
    public long? FragmentedClusters { get; init; }
    /// <summary>qcow2: compressed guest clusters.</summary>
    public long? CompressedClusters { get; init; }
    /// <summary>qcow2: the dirty bit is still set (lazy refcounts after a crash, or an operation cut short).</summary>
    public bool Dirty { get; init; }
    /// <summary>The first problems found, in words.</summary>
    public IReadOnlyList<string> Problems { get; init; } = Array.Empty<string>();
    /// <summary>Why the image cannot be repaired safely (empty when it can, or nothing is wrong).</summary>
    public IReadOnlyList<string> Unrepairable { get; init; } = Array.Empty<string>();
    /// <summary>A repair was asked for and refused because of <see cref="Unrepairable"/> damage; nothing was written.</summary>
    public bool RepairRefused { get; init; }

    /// <summary>No corruption, leak or check error, and not left dirty.</summary>
    public bool IsHealthy => Corruptions == 0 && Leaks == 0 && CheckErrors == 0 && !Dirty;
}

/// <summary>Checks and repairs images.</summary>
public static class CheckImage
{
    /// <summary>
    /// Checks the image at <paramref name="path"/> and, with <paramref name="repair"/>, repairs it. The result describes
    /// the image as it is afterwards, with what the repair fixed.
    /// </summary>
    public static CheckResult Run(string path, RepairMode repair = RepairMode.None, ImageFormat? format = null, CancellationToken cancel = default)
    {
        path = System.IO.Path.GetFullPath(path);
        ImageFormat actual;
        var storage = ImageChain.OpenStorage(path, writable: repair != RepairMode.None);
        try
        {
            actual = format ?? FormatProbe.Probe(storage).Format;
            cancel.ThrowIfCancellationRequested();
        }
        catch
        {
            storage.Dispose();
            throw;
        }
        if (actual != ImageFormat.Qcow2)
        {
            storage.Dispose();
            if (actual == ImageFormat.Raw) throw VDiskException.Unsupported(path, $"{path} is a raw image, which has no metadata to check.");
            if (repair != RepairMode.None)
                throw VDiskException.Unsupported(path, $"{path}: VDisk repairs qcow2 images only; {FormatProbe.Name(actual)} images are checked read-only.");
            return TableCheck(path, actual, format, cancel);
        }
        var (before, fixedCounts) = Qcow2Image.CheckAndRepair(storage, repair != RepairMode.None, repair == RepairMode.All, cancel);
        if (fixedCounts is not { } counts)
            return FromReport(path, before.Report) with { RepairRefused = repair != RepairMode.None && before.Report.Unrepairable.Count > 0 };
        using var reread = ImageChain.OpenStorage(path, writable: false, forceShare: true);
        return FromReport(path, Qcow2Check.Run(reread)) with { LeaksFixed = counts.LeaksFixed, CorruptionsFixed = counts.CorruptionsFixed };
    }

    private static CheckResult FromReport(string path, Qcow2CheckReport r) => new()
    {
        Path = path, Format = ImageFormat.Qcow2, Corruptions = r.Corruptions, Leaks = r.Leaks, CheckErrors = r.CheckErrors,
        ImageEndOffset = r.ImageEndOffset, TotalClusters = r.TotalClusters, AllocatedClusters = r.AllocatedClusters,
        FragmentedClusters = r.FragmentedClusters, CompressedClusters = r.CompressedClusters, Dirty = r.Dirty,
        Problems = r.Problems, Unrepairable = r.Unrepairable,
    };

    // VMDK and VDI: read-only table checks. Damage that stops the image from opening at all is one corruption.
    private static CheckResult TableCheck(string path, ImageFormat format, ImageFormat? declared, CancellationToken cancel)
    {
        (long Corruptions, IReadOnlyList<string> Problems) found;
        try
        {
            if (format == ImageFormat.Vdi)
            {
                using var storage = ImageChain.OpenStorage(path, writable: false);
                found = VdiCheck.Run(storage);
            }
            else
            {
                using var driver = (VmdkDriver)ImageChain.OpenFile(path, declared, writable: false); // a probed descriptor stays confined to its folder
                found = VmdkCheck.Run(driver, cancel);
            }
        }
        catch (VDiskException e) when (e.Kind == VDiskErrorKind.Corrupt)
        {
            found = (1, new[] { e.Message });
        }
        return new CheckResult { Path = path, Format = format, Corruptions = found.Corruptions, Problems = found.Problems };
    }
}
