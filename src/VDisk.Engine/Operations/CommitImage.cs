// Committing a backing chain into its base (qemu-img commit; issue 8 "Merge-VDiskChain commit mode"). Every range
// the layers above the base decide (data, or zeroes over what the base holds) is copied into the base, which first
// grows to the top's size if it is smaller. Only the base is written while copying, and only ranges the layers above
// it cover, so the top reads exactly as before at every moment: an interrupted commit is finished by running it
// again. Then, unless the overlays are kept (qemu-img commit -d), they are deleted: a qcow2 top is first pointed
// straight at the base (it reads the same: the base now reads as the top did), the layers in between go, and the
// top goes last, so every file still there reads as it did, and a second run finds the top and finishes the job.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>Options of a commit.</summary>
public sealed record CommitOptions
{
    /// <summary>Full path of the image to commit into (in the top's chain); null: the top's backing image.</summary>
    public string? BasePath { get; init; }
    /// <summary>Leave every overlay as it is (qemu-img commit -d); otherwise they are deleted once the base holds everything.</summary>
    public bool KeepOverlays { get; init; }
    /// <summary>Format of the top image; null probes it.</summary>
    public ImageFormat? Format { get; init; }
    /// <summary>Reader threads.</summary>
    public int ThrottleLimit { get; init; } = Environment.ProcessorCount;
}

/// <summary>What a commit will do, found without changing anything.</summary>
public sealed record CommitPlan
{
    /// <summary>Full path of the top image.</summary>
    public required string Top { get; init; }
    /// <summary>Full path of the image committed into.</summary>
    public required string Base { get; init; }
    /// <summary>The images above the base, top first: committed, and deleted unless kept.</summary>
    public required IReadOnlyList<string> Overlays { get; init; }
    /// <summary>The base's size now.</summary>
    public required long BaseSize { get; init; }
    /// <summary>The base's size afterwards (the top's, when that is larger).</summary>
    public required long NewBaseSize { get; init; }
    /// <summary>True when the overlays are kept.</summary>
    public required bool KeepOverlays { get; init; }
    internal List<PlannedLayer> Layers { get; init; } = new();
    internal int BaseDepth { get; init; }
}

/// <summary>What a commit did.</summary>
public sealed record CommitResult
{
    /// <summary>Full path of the base, which now reads as the top did.</summary>
    public required string Base { get; init; }
    /// <summary>Every file deleted (none when the overlays were kept).</summary>
    public required IReadOnlyList<string> Deleted { get; init; }
    /// <summary>Guest bytes written into the base as data.</summary>
    public required long BytesWritten { get; init; }
}

/// <summary>Commits overlays into their base image.</summary>
public static class CommitImage
{
    /// <summary>
    /// Finds the chain and checks the commit can be done: the top has a backing file (else <see cref="VDiskErrorKind.NoBacking"/>),
    /// <see cref="CommitOptions.BasePath"/> is below it in its chain (else <see cref="VDiskErrorKind.NotInChain"/>), overlays to
    /// delete hold no internal snapshots, and a base smaller than the top can grow. Every layer is opened read-only.
    /// </summary>
    public static CommitPlan Plan(string top, CommitOptions options, CancellationToken cancel = default)
    {
        top = Path.GetFullPath(top);
        var layers = ChainLayers.Read(top, options.Format, cancel);
        if (layers.Count == 1)
            throw new VDiskException(VDiskErrorKind.NoBacking, top, $"{top} has no backing file: there is nothing to commit it into.");
        int baseDepth = 1;
        if (options.BasePath != null)
        {
            if (!HostFileKind.Exists(options.BasePath))
                throw new VDiskException(VDiskErrorKind.NotFound, options.BasePath, $"{top}: the base '{options.BasePath}' does not exist.");
            baseDepth = ChainLayers.DepthOf(layers, options.BasePath);
            if (baseDepth == 0)
                throw new VDiskException(VDiskErrorKind.NotInChain, top, $"{top}: the base '{options.BasePath}' is the image itself; name an image below it ({ChainLayers.Describe(layers)}).");
            if (baseDepth < 0)
                throw new VDiskException(VDiskErrorKind.NotInChain, top, $"{top}: '{options.BasePath}' is not in its backing chain ({ChainLayers.Describe(layers)}).");
        }
        var baseLayer = layers[baseDepth];
        var overlays = layers.Take(baseDepth).ToList();
        if (!options.KeepOverlays && overlays.FirstOrDefault(l => l.SnapshotCount > 0) is { } kept)
            throw VDiskException.Invalid(kept.Path, $"{kept.Path} holds {kept.SnapshotCount} internal snapshot(s), which deleting it after the commit would lose; " +
                "keep the overlays, or remove the snapshots first.");
        long newSize = Math.Max(baseLayer.VirtualSize, layers[0].VirtualSize);
        if (newSize > baseLayer.VirtualSize && (baseLayer.Format is not (ImageFormat.Raw or ImageFormat.Qcow2) || HostFileKind.Of(baseLayer.Path) == HostFileType.BlockDevice))
            throw VDiskException.Unsupported(baseLayer.Path, $"the base ({FormatProbe.Name(baseLayer.Format)}, {baseLayer.VirtualSize} bytes) is smaller than " +
                $"{top} ({layers[0].VirtualSize} bytes) and cannot grow; only raw and qcow2 files can.");
        return new CommitPlan
        {
            Top = top, Base = baseLayer.Path, Overlays = overlays.Select(l => l.Path).ToList(), BaseSize = baseLayer.VirtualSize,
            NewBaseSize = newSize, KeepOverlays = options.KeepOverlays, Layers = layers, BaseDepth = baseDepth,
        };
    }

    /// <summary>
    /// Commits <paramref name="top"/> (and every layer down to the base) into the base. Progress is the top's guest
    /// offset reached; cancellation stops the copy, leaving a base a second run completes and a top that reads as before.
    /// </summary>
    public static CommitResult Run(string top, CommitOptions options, IProgress<OperationProgress>? progress = null, CancellationToken cancel = default)
    {
        var plan = Plan(top, options, cancel);
        var baseLayer = plan.Layers[plan.BaseDepth];
        if (plan.NewBaseSize > plan.BaseSize) Grow(baseLayer, plan.NewBaseSize);
        long written;
        using (var baseDisk = ImageChain.Open(baseLayer.Path, new OpenOptions { Writable = true, Format = baseLayer.Format }))
        {
            var drivers = new List<IImageDriver>();
            try
            {
                var view = baseDisk;
                for (int depth = plan.BaseDepth - 1; depth >= 0; depth--)
                {
                    var layer = plan.Layers[depth];
                    drivers.Add(ImageChain.OpenFile(layer.Path, layer.Format, writable: false));
                    view = new VirtualDisk(layer.Path, drivers[^1], view, writable: false);
                }
                var copier = new ChainCopier(view, baseDisk, null, options.ThrottleLimit, progress, cancel);
                copier.Run(Ranges(view, baseDisk, plan.BaseDepth, cancel));
                baseDisk.Flush();
                written = copier.BytesWritten;
            }
            finally
            {
                foreach (var driver in drivers) driver.Dispose(); // not through the view: the base is disposed by its own using
            }
        }
        var deleted = options.KeepOverlays ? new List<string>() : RemoveOverlays(plan);
        if (options.KeepOverlays && plan.BaseDepth > 1)
            EngineWarnings.Warn($"The overlays were kept: {plan.Top} still reads as before, but {string.Join(", ", plan.Overlays.Skip(1))} " +
                "no longer read as they did on their own (the base beneath them changed).");
        return new CommitResult { Base = plan.Base, Deleted = deleted, BytesWritten = written };
    }

    // What the layers above the base decide: their data, and zeroes where the base might hold data.
    private static IEnumerable<ChainCopyRange> Ranges(VirtualDisk view, VirtualDisk baseDisk, int baseDepth, CancellationToken cancel)
    {
        for (long pos = 0; pos < view.Length;)
        {
            cancel.ThrowIfCancellationRequested();
            var status = view.GetBlockStatus(pos, view.Length - pos);
            if (status.Depth < baseDepth && status.Kind == ExtentKind.Data)
                yield return new ChainCopyRange(pos, status.Length, ChainCopyAction.Copy);
            else if (status.Depth < baseDepth && BlockPipeline.DataRuns(baseDisk, pos, pos + status.Length, cancel).Any())
                yield return new ChainCopyRange(pos, status.Length, ChainCopyAction.Zero);
            pos += status.Length;
        }
    }

    // The base takes the top's size. What it reads past its old end must be zeroes, as the top read there: a raw file
    // grows sparse; a qcow2 image zeroes its clusters there first when a larger backing file would show through, and
    // the rest of the cluster its old end falls in.
    private static void Grow(PlannedLayer baseLayer, long size)
    {
        if (baseLayer.Format == ImageFormat.Raw)
        {
            using var raw = ImageChain.OpenFile(baseLayer.Path, ImageFormat.Raw, writable: true);
            raw.Storage.SetLength(size);
            raw.Flush();
            return;
        }
        using var disk = ImageChain.Open(baseLayer.Path, new OpenOptions { Writable = true, Format = ImageFormat.Qcow2 });
        long old = disk.Length, cluster = disk.Driver.ClusterSize;
        ((Qcow2Driver)disk.Driver).Image.Grow(size, disk.Backing is { } below && below.Length > old);
        long tail = Math.Min(size, (old + cluster - 1) / cluster * cluster) - old;
        if (tail > 0 && disk.GetBlockStatus(old, tail).Kind == ExtentKind.Data) disk.WriteZeroes(old, tail);
    }

    // Deletes the overlays so that every moment leaves files that read as before (see the file comment).
    private static List<string> RemoveOverlays(CommitPlan plan)
    {
        var top = plan.Layers[0];
        var between = plan.Layers.Skip(1).Take(plan.BaseDepth - 1).ToList();
        var deleted = new List<string>();
        if (between.Count > 0 && top.Format == ImageFormat.Qcow2)
        {
            bool relative = plan.Layers[plan.BaseDepth - 1].StoredBackingName is { } stored && !Path.IsPathRooted(stored);
            using (var driver = (Qcow2Driver)ImageChain.OpenFile(top.Path, ImageFormat.Qcow2, writable: true))
                driver.Image.SetBacking(ChainLayers.StoredName(top.Path, plan.Base, relative), FormatProbe.Name(plan.Layers[plan.BaseDepth].Format), changesGuestContent: false);
            foreach (var layer in between) Delete(layer, deleted);
            Delete(top, deleted);
        }
        else
        {
            Delete(top, deleted);
            foreach (var layer in between) Delete(layer, deleted);
        }
        return deleted;
    }

    // Deletes a layer's files, main file first, each under QEMU's write locks so a file a VM opened meanwhile is refused.
    private static void Delete(PlannedLayer layer, List<string> deleted)
    {
        foreach (string file in layer.Files)
        {
            using (ReplacementLock.Acquire(file, Array.Empty<string>()))
                File.Delete(file);
            deleted.Add(file);
        }
    }
}
