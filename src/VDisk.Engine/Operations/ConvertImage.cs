// Converting images (DESIGN.md "Operations": Convert; qemu-img convert): options checked, the output
// created under a temporary name, the copy done by ConvertCopier on the block pipeline, and the output
// renamed into place only on success.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;

namespace VDisk.Engine.Operations;

/// <summary>Converts an image (with its backing chain) to another format or layout.</summary>
public static class ConvertImage
{
    /// <summary>Converts <paramref name="source"/> into a new image at <paramref name="destination"/>.</summary>
    public static ConvertResult Run(string source, string destination, ConvertOptions options,
        IProgress<OperationProgress>? progress = null, CancellationToken cancel = default)
    {
        source = Path.GetFullPath(source);
        destination = Path.GetFullPath(destination);
        options = Normalise(options, destination);

        using var input = ImageChain.Open(source, new OpenOptions
        {
            Format = options.SourceFormat, Snapshot = options.Snapshot, CacheMode = options.SourceCacheMode, BackingCacheMode = options.SourceCacheMode,
        });
        var plan = CreateImage.Plan(destination, new CreateOptions
        {
            Format = options.DestinationFormat,
            Subformat = options.Subformat,
            Size = input.Length,
            ClusterSize = options.ClusterSize ?? 65536,
            Preallocation = options.Preallocation,
            Compat = options.Compat,
            CompressionType = options.CompressionType,
            BackingPath = options.BackingPath,
            BackingPathRelative = options.BackingPathRelative,
            BackingFormat = options.BackingFormat,
        }, options.Overwrite);
        RefuseOverwritingInputs(plan, input, options.BackingPath);

        string temp = CreateImage.TempNameFor(destination);
        try
        {
            CreateImage.Write(plan, temp, cancel);
            ConvertResult result;
            using (var output = ImageChain.Open(temp, new OpenOptions { Writable = true, Format = options.DestinationFormat, CacheMode = options.CacheMode }))
            {
                var copier = new ConvertCopier(input, output, options, progress, cancel);
                copier.Run();
                output.Flush();
                result = new ConvertResult { Destination = destination, VirtualSize = input.Length, BytesWritten = copier.BytesWritten, CompressedUnits = copier.CompressedUnits };
            }
            File.Move(temp, destination, options.Overwrite);
            return result;
        }
        catch (Exception e)
        {
            CreateImage.TryDelete(temp);
            var wrapped = CreateImage.WrapHostError(e, destination);
            if (wrapped == e) throw;
            throw wrapped;
        }
    }

    private static ConvertOptions Normalise(ConvertOptions o, string destination)
    {
        if (o.SparseThreshold < 0 || (o.SparseThreshold != 0 && o.SparseThreshold % 512 != 0))
            throw VDiskException.Invalid(destination, $"Sparse threshold {o.SparseThreshold} is invalid: use 0 or a multiple of 512 bytes.");
        if (o.ThrottleLimit < 1)
            throw VDiskException.Invalid(destination, $"Throttle limit {o.ThrottleLimit} is invalid: use 1 or more workers.");
        bool streamOptimized = o.DestinationFormat == ImageFormat.Vmdk && o.Subformat == ImageSubformat.StreamOptimized;
        if (o.Compress && o.DestinationFormat == ImageFormat.Vmdk && o.Subformat == ImageSubformat.Default)
            return o with { Subformat = ImageSubformat.StreamOptimized };
        if (o.Compress && o.DestinationFormat != ImageFormat.Qcow2 && !streamOptimized)
            throw VDiskException.Invalid(destination, $"Compression is supported for qcow2 and streamOptimized vmdk output, not {FormatProbe.Name(o.DestinationFormat)}.");
        return streamOptimized ? o with { Compress = true } : o;
    }

    // No file the output writes (a VMDK writes its extents under their final names) may be a file the
    // conversion reads: the source chain, or the image the output will be an overlay of.
    private static void RefuseOverwritingInputs(CreateImage.CreatePlan plan, VirtualDisk input, string? backingPath)
    {
        var comparer = OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;
        var inputs = new HashSet<string>(comparer);
        for (var layer = input; layer != null; layer = layer.Backing)
            foreach (var file in layer.Driver.Files) inputs.Add(Path.GetFullPath(file.Name));
        if (backingPath != null) inputs.Add(Path.GetFullPath(backingPath));
        foreach (var file in CreateImage.FilesOf(plan))
            if (inputs.Contains(file))
                throw VDiskException.Invalid(plan.Path, $"{plan.Path}: the output would overwrite '{file}', which the conversion reads.");
    }
}
