// Winning back space in a qcow2 image (DESIGN.md "Operations"; what qemu-img has no one command for). Quick mode works
// in place through the metadata core: leaked clusters are given back (Qcow2Repair), clusters that read as zeroes become
// zero clusters (Qcow2Optimize), free clusters are punched out and the free end of the file cut off, all in an order a
// power cut cannot turn into corruption. Full mode rewrites the active state compactly through the convert pipeline
// (only what differs from the backing file, when there is one) into a temporary file beside the image and renames it
// over the image while holding QEMU's write lock; an image with internal snapshots is refused, since a rewrite of the
// active state would drop them, and so is one with persistent dirty bitmaps (quick mode keeps them valid: it changes no
// guest content and never touches a referenced cluster). Either way the guest view does not change, and an image that is not consistent (or is
// dirty) is refused until Test-VDisk -Repair All has run.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>What an optimize did.</summary>
public sealed record OptimizeResult
{
    /// <summary>Full path of the image.</summary>
    public required string Path { get; init; }
    /// <summary>True for a full rewrite, false for the quick in-place mode.</summary>
    public bool Full { get; init; }
    /// <summary>File length before, in bytes.</summary>
    public long LengthBefore { get; init; }
    /// <summary>File length after, in bytes.</summary>
    public long LengthAfter { get; init; }
    /// <summary>Bytes the file occupied on its file system before.</summary>
    public long AllocatedBefore { get; init; }
    /// <summary>Bytes the file occupies on its file system after.</summary>
    public long AllocatedAfter { get; init; }
    /// <summary>Guest clusters that read as zeroes and no longer hold a host cluster (quick mode).</summary>
    public long ZeroedClusters { get; init; }
    /// <summary>Leaked clusters given back (quick mode).</summary>
    public long LeaksFreed { get; init; }
    /// <summary>Bytes of the file system given back.</summary>
    public long BytesWonBack => Math.Max(0, AllocatedBefore - AllocatedAfter);
}

/// <summary>Gives back the space a qcow2 image no longer needs.</summary>
public static class OptimizeImage
{
    /// <summary>Optimizes the qcow2 image at <paramref name="path"/>: in place, or with <paramref name="full"/> by a compact rewrite.</summary>
    public static OptimizeResult Run(string path, bool full = false, IProgress<OperationProgress>? progress = null, CancellationToken cancel = default)
    {
        path = System.IO.Path.GetFullPath(path);
        var (lengthBefore, allocatedBefore) = Sizes(path);
        var result = full ? Rewrite(path, progress, cancel) : Quick(path, cancel);
        var (lengthAfter, allocatedAfter) = Sizes(path);
        return result with { LengthBefore = lengthBefore, AllocatedBefore = allocatedBefore, LengthAfter = lengthAfter, AllocatedAfter = allocatedAfter };
    }

    private static OptimizeResult Quick(string path, CancellationToken cancel)
    {
        var storage = ImageChain.OpenStorage(path, writable: true);
        Qcow2Image image;
        Qcow2CheckAnalysis analysis;
        try
        {
            analysis = Inspect(storage, path, cancel);
            image = Qcow2Image.Open(storage, writable: true, Qcow2CacheBudget.Default);
        }
        catch
        {
            storage.Dispose();
            throw;
        }
        using (image)
        {
            long leaks = analysis.Report.Leaks > 0 ? image.Repair(analysis, all: false).LeaksFixed : 0;
            long zeroed = image.ZeroClustersReadingAsZeroes(analysis.Header.BackingFile != null, cancel);
            image.TrimFreeSpace(cancel);
            return new OptimizeResult { Path = path, ZeroedClusters = zeroed, LeaksFreed = leaks };
        }
    }

    private static OptimizeResult Rewrite(string path, IProgress<OperationProgress>? progress, CancellationToken cancel)
    {
        Qcow2Header header;
        var stamp = File.GetLastWriteTimeUtc(path);
        using (var storage = ImageChain.OpenStorage(path, writable: false))
            header = Inspect(storage, path, cancel).Header;
        if (header.SnapshotCount > 0)
            throw VDiskException.Unsupported(path, $"{path} has {header.SnapshotCount} internal snapshot(s), which a full rewrite would drop; " +
                "delete them first (Remove-VDiskSnapshot), or optimize in place without -Full.");
        if (Qcow2BitmapDirectory.Valid(header))
        {
            var names = BitmapImage.List(path).Select(b => $"'{b.Name}'");
            throw VDiskException.Unsupported(path, $"{path} has persistent dirty bitmaps ({string.Join(", ", names)}), which a full rewrite would drop; " +
                "optimize in place without -Full (which keeps them), or remove them first.");
        }
        var options = new ConvertOptions
        {
            SourceFormat = ImageFormat.Qcow2,
            DestinationFormat = ImageFormat.Qcow2,
            ClusterSize = header.ClusterSize,
            Compat = header.Compat,
            CompressionType = header.CompressionType,
        };
        if (header.BackingFile is { } backing)
            options = options with
            {
                BackingPath = ImageChain.ResolveBackingPath(path, backing),
                BackingPathRelative = !System.IO.Path.IsPathRooted(backing),
                BackingFormat = FormatProbe.ParseName(header.BackingFormat),
            };
        string temp = TemporaryOutputs.NameFor(path);
        try
        {
            ConvertImage.Run(path, temp, options, progress, cancel);
            using var replacing = ReplacementLock.Acquire(path, Array.Empty<string>());
            if (File.GetLastWriteTimeUtc(path) != stamp)
                throw new VDiskException(VDiskErrorKind.InUse, path, $"{path} was written by another process during the rewrite; it was left as it is.");
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            CreateImage.TryDelete(temp);
        }
        return new OptimizeResult { Path = path, Full = true };
    }

    // The image must be qcow2 with features the engine handles, consistent and clean (leaks allowed: quick mode gives
    // them back); dirty and corrupt images get the advice to repair them first.
    private static Qcow2CheckAnalysis Inspect(IStorage storage, string path, CancellationToken cancel)
    {
        var format = FormatProbe.Probe(storage).Format;
        if (format != ImageFormat.Qcow2)
            throw VDiskException.Unsupported(path, $"{path} is {FormatProbe.Name(format)}; Optimize-VDisk works on qcow2 images (Convert-VDisk rewrites any image compactly).");
        var analysis = Qcow2Check.Analyze(storage, cancel, h =>
        {
            Qcow2Driver.CheckFeatures(h, path, writable: false);
            if (h.CryptMethod != 0 || h.Extensions.Any(e => e.Type == Qcow2HeaderExtension.FullDiskEncryptionType))
                throw VDiskException.Unsupported(path, $"{path} is encrypted; Optimize-VDisk cannot tell which of its clusters read as zeroes.");
        });
        var r = analysis.Report;
        if (r.Corruptions > 0 || r.CheckErrors > 0 || r.Dirty || r.MarkedCorrupt)
            throw VDiskException.Corrupt(path, $"{path} is not consistent ({r.Corruptions} corruption(s){(r.Dirty ? ", dirty" : "")}); " +
                "repair it first (Test-VDisk -Repair All), then optimize it.");
        return analysis;
    }

    private static (long Length, long Allocated) Sizes(string path)
    {
        using var storage = ImageChain.OpenStorage(path, writable: false, forceShare: true);
        return (storage.Length, storage.AllocatedBytes);
    }
}
