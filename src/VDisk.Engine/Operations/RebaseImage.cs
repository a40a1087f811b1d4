// Changing the backing file of a qcow2 image (qemu-img rebase; issue 8 "Set-VDisk -BackingPath", "Merge-VDiskChain
// -Pull"). Safe mode keeps the guest view: wherever the image does not hold its own data, every unit where the old
// chain and the new backing image read differently is copied into the image (what the old chain reads), and only
// then, durably, does the header name the new backing file; pulling (flattening) is the same with no new backing
// image, which reads as zeroes. Each moment reads as before: a copied cluster holds what the old chain read, and the
// header switches in one sector (Qcow2HeaderLayout). A failure or Ctrl+C during the copy unmaps the clusters it
// filled, so the image is left as it was. Unsafe mode rewrites the reference only (qemu-img rebase -u). The new
// backing name is stored relative to the image's folder when the caller gave a relative path, as qemu-img does.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>Options of a rebase.</summary>
public sealed record RebaseOptions
{
    /// <summary>Full path of the new backing image; null for none (safe mode then flattens the image).</summary>
    public string? BackingPath { get; init; }
    /// <summary>Store <see cref="BackingPath"/> relative to the image's folder (the caller was given a relative path).</summary>
    public bool BackingPathRelative { get; init; }
    /// <summary>Format to record for the new backing image; null probes it.</summary>
    public ImageFormat? BackingFormat { get; init; }
    /// <summary>Only rewrite the reference (qemu-img rebase -u): the guest view changes unless the images match.</summary>
    public bool Unsafe { get; init; }
    /// <summary>The new backing image must already be in the image's chain (a pull down to a base).</summary>
    public bool BackingMustBeInChain { get; init; }
    /// <summary>Format of the image; null probes it.</summary>
    public ImageFormat? Format { get; init; }
    /// <summary>Reader threads.</summary>
    public int ThrottleLimit { get; init; } = Environment.ProcessorCount;
}

/// <summary>What a rebase did.</summary>
public sealed record RebaseResult
{
    /// <summary>Full path of the image.</summary>
    public required string Path { get; init; }
    /// <summary>The backing name now stored, or null for none.</summary>
    public string? BackingName { get; init; }
    /// <summary>Guest bytes copied into the image as data.</summary>
    public long BytesWritten { get; init; }
}

/// <summary>Changes or removes the backing file of qcow2 images.</summary>
public static class RebaseImage
{
    /// <summary>
    /// Rebases <paramref name="image"/> onto <see cref="RebaseOptions.BackingPath"/> (or none). Errors leave the image as
    /// it was: a non-qcow2 image (<see cref="VDiskErrorKind.Unsupported"/>), a missing new backing file
    /// (<see cref="VDiskErrorKind.BackingMissing"/>; unsafe mode accepts one when its format is given), a new backing
    /// file whose chain leads back to the image (<see cref="VDiskErrorKind.ChainLoop"/>), an old chain that cannot be
    /// read in safe mode, an image in use.
    /// </summary>
    public static RebaseResult Run(string image, RebaseOptions options, IProgress<OperationProgress>? progress = null, CancellationToken cancel = default)
    {
        image = Path.GetFullPath(image);
        string? target = options.BackingPath is { Length: > 0 } given ? Path.GetFullPath(given) : null;
        var current = Current(image, options.Format);
        if (current.Backing is null && target is null) return new RebaseResult { Path = image }; // already standalone: nothing to do
        if (current.Format != ImageFormat.Qcow2)
            throw VDiskException.Unsupported(image, $"{FormatProbe.Name(current.Format)} images cannot change their backing file; only qcow2 images can be rebased.");
        List<PlannedLayer>? oldChain = null;
        if (!options.Unsafe || options.BackingMustBeInChain)
        {
            try
            {
                oldChain = ChainLayers.Read(image, ImageFormat.Qcow2, cancel);
            }
            catch (VDiskException e) when (e.Kind == VDiskErrorKind.BackingMissing && !options.Unsafe)
            {
                throw new VDiskException(e.Kind, e.Path, $"{e.Message} A safe rebase reads the old backing chain; an unsafe one only rewrites the reference.", e);
            }
            if (options.BackingMustBeInChain && target != null && !HostFileKind.Exists(target))
                throw new VDiskException(VDiskErrorKind.NotFound, target, $"{image}: the base '{target}' does not exist.");
            if (options.BackingMustBeInChain && target != null && ChainLayers.DepthOf(oldChain, target) < 1)
                throw new VDiskException(VDiskErrorKind.NotInChain, image, $"{image}: '{target}' is not below it in its backing chain ({ChainLayers.Describe(oldChain)}).");
        }
        ImageFormat? format = target is null ? null : CheckNewBacking(image, target, options);
        string? name = target is null ? null : ChainLayers.StoredName(image, target, options.BackingPathRelative);

        if (options.Unsafe)
        {
            using var driver = (Qcow2Driver)ImageChain.OpenFile(image, ImageFormat.Qcow2, writable: true);
            driver.Image.SetBacking(name, format is { } f ? FormatProbe.Name(f) : null, changesGuestContent: true);
            return new RebaseResult { Path = image, BackingName = name };
        }
        using var disk = ImageChain.Open(image, new OpenOptions { Writable = true, Format = ImageFormat.Qcow2 });
        using var newBacking = target is null ? null : ImageChain.Open(target, new OpenOptions { Format = format });
        int inOldChain = target is null ? -1 : ChainLayers.DepthOf(oldChain!, target);
        int sameFrom = inOldChain >= 1 ? inOldChain : int.MaxValue;
        var copier = new ChainCopier(disk, disk, newBacking, options.ThrottleLimit, progress, cancel);
        try
        {
            copier.Run(Ranges(disk, newBacking, sameFrom, cancel));
        }
        catch
        {
            Undo(disk, copier.Written);
            throw;
        }
        ((Qcow2Driver)disk.Driver).Image.SetBacking(name, format is { } recorded ? FormatProbe.Name(recorded) : null, changesGuestContent: false);
        return new RebaseResult { Path = image, BackingName = name, BytesWritten = copier.BytesWritten };
    }

    // The image's format and backing reference, read without writing anything.
    private static (ImageFormat Format, BackingReference? Backing) Current(string image, ImageFormat? format)
    {
        using var driver = ImageChain.OpenFile(image, format, writable: false);
        return (driver.Format, driver.Backing);
    }

    // The new backing file must exist and open (unsafe mode with a given format excepted), and its chain must not lead
    // back to the image. Returns the format to record.
    private static ImageFormat CheckNewBacking(string image, string target, RebaseOptions options)
    {
        if (HostFileInfo.SameFile(image, target))
            throw new VDiskException(VDiskErrorKind.ChainLoop, image, $"{image} cannot be its own backing file.");
        if (!HostFileKind.Exists(target))
        {
            if (options.Unsafe && options.BackingFormat is { } declared) return declared;
            throw new VDiskException(VDiskErrorKind.BackingMissing, image, $"{image}: the new backing file '{target}' does not exist" +
                (options.Unsafe ? "; give its format to record it anyway." : "."));
        }
        var layers = ChainLayers.Read(target, options.BackingFormat, CancellationToken.None);
        if (layers.FirstOrDefault(l => HostFileInfo.SameFile(l.Path, image)) is { } loop)
            throw new VDiskException(VDiskErrorKind.ChainLoop, image,
                $"{image}: backing it with '{target}' would make a loop ({StoredFileNames.Printable(image)} -> {ChainLayers.Describe(layers)}).");
        return layers[0].Format;
    }

    // Where the image does not decide its own content: what the old chain reads there must survive the switch. Ranges
    // whose content comes from the new backing image itself (it is in the old chain, at depth sameFrom or deeper) already
    // read the same; elsewhere units are compared, skipping runs where neither side holds data.
    private static IEnumerable<ChainCopyRange> Ranges(VirtualDisk disk, VirtualDisk? newBacking, int sameFrom, CancellationToken cancel)
    {
        for (long pos = 0; pos < disk.Length;)
        {
            cancel.ThrowIfCancellationRequested();
            var status = disk.GetBlockStatus(pos, disk.Length - pos);
            long end = pos + status.Length;
            bool mayDiffer = status.Depth >= 1 && status.Depth < sameFrom
                && (status.Kind == ExtentKind.Data || (newBacking != null && BlockPipeline.DataRuns(newBacking, pos, end, cancel).Any()));
            if (mayDiffer) yield return new ChainCopyRange(pos, status.Length, ChainCopyAction.CopyDifferences);
            pos = end;
        }
    }

    // Unmaps what an interrupted copy wrote: those clusters were unallocated before it (it only writes where the image
    // held nothing of its own), and each reads the same either way, so the image is back as it was at every step.
    private static void Undo(VirtualDisk disk, IReadOnlyList<(long Offset, long Length)> written)
    {
        if (written.Count == 0) return;
        var image = ((Qcow2Driver)disk.Driver).Image;
        int bits = image.Geometry.ClusterBits;
        try
        {
            foreach (var (offset, length) in written)
                image.UpdateEntries(offset >> bits, ((offset + length - 1) >> bits) - (offset >> bits) + 1, (_, _) => 0);
            image.Flush();
        }
        catch (Exception e) when (e is IOException or VDiskException)
        {
            // The original failure is what gets reported; what was copied reads the same as before anyway.
        }
    }
}
