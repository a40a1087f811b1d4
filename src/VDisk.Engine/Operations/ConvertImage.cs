// Converting images (DESIGN.md "Operations": Convert; qemu-img convert): options checked, the copy done by
// ConvertCopier on the block pipeline, and the output written to a temporary file renamed into place on
// success (OutputFile), or in place into a block device (BlockDeviceOutput).
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>Converts an image (with its backing chain) to another format or layout.</summary>
public static class ConvertImage
{
    /// <summary>
    /// Converts <paramref name="source"/> into a new image at <paramref name="destination"/>, or writes it as raw into
    /// the existing block device <paramref name="destination"/> names (see <see cref="BlockDeviceOutput"/>).
    /// </summary>
    public static ConvertResult Run(string source, string destination, ConvertOptions options,
        IProgress<OperationProgress>? progress = null, CancellationToken cancel = default)
    {
        source = Path.GetFullPath(source);
        destination = Path.GetFullPath(destination);
        options = Normalise(options, destination);
        bool toBlockDevice = OutputFile.DestinationKind(destination, blockDeviceAllowed: true) == HostFileType.BlockDevice;
        using var warnings = OperationWarnings.Collect();

        using var input = ImageChain.Open(source, new OpenOptions
        {
            Format = options.SourceFormat, Snapshot = options.Snapshot, CacheMode = options.SourceCacheMode, BackingCacheMode = options.SourceCacheMode,
        });
        ConvertResult Copy(VirtualDisk output, ConvertOptions copyOptions)
        {
            var copier = new ConvertCopier(input, output, copyOptions, progress, cancel);
            copier.Run();
            output.Flush();
            copyOptions.Verifier?.Complete();
            return new ConvertResult { Destination = destination, VirtualSize = input.Length, BytesWritten = copier.BytesWritten, CompressedUnits = copier.CompressedUnits };
        }
        if (toBlockDevice)
        {
            RefuseOverwritingInputs(new[] { destination }, destination, input, options.BackingPath);
            return BlockDeviceOutput.Write(input, destination, options, Copy);
        }

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
            Encryption = options.Encryption,
            Passphrase = options.Passphrase,
        }, options.Overwrite);
        RefuseOverwritingInputs(CreateImage.FilesOf(plan), destination, input, options.BackingPath);

        try
        {
            using var file = OutputFile.Begin(plan, options.Overwrite);
            CreateImage.Write(plan, file.Temp, cancel);
            ConvertResult result;
            using (options.Passphrase is null ? null : ImageKeys.Use(new[] { options.Passphrase }))
            using (var output = ImageChain.Open(file.Temp, new OpenOptions { Writable = true, Format = options.DestinationFormat, CacheMode = options.CacheMode }))
                result = Copy(output, options);
            file.Commit();
            return result with { Warnings = warnings.Messages };
        }
        catch (Exception e) when (CreateImage.WrapHostError(e, destination) is var wrapped && wrapped != e)
        {
            throw wrapped;
        }
    }

    private static ConvertOptions Normalise(ConvertOptions o, string destination)
    {
        if (o.SparseThreshold < 0 || (o.SparseThreshold != 0 && o.SparseThreshold % 512 != 0))
            throw VDiskException.Invalid(destination, $"Sparse threshold {o.SparseThreshold} is invalid: use 0 or a multiple of 512 bytes.");
        if (o.ThrottleLimit < 1)
            throw VDiskException.Invalid(destination, $"Throttle limit {o.ThrottleLimit} is invalid: use 1 or more workers.");
        if (o.Encryption != null && o.Compress)
            throw VDiskException.Invalid(destination, $"{destination}: compression and encryption cannot be used together (QEMU refuses them in one qcow2 image too); choose one.");
        if (o.Encryption != null && o.DestinationFormat != ImageFormat.Qcow2)
            throw VDiskException.Invalid(destination, $"{destination}: only qcow2 output can be encrypted, not {FormatProbe.Name(o.DestinationFormat)}.");
        if (o.Encryption != null && o.Passphrase is null)
            throw VDiskException.Invalid(destination, $"{destination}: encrypted output needs a passphrase.");
        bool streamOptimized = o.DestinationFormat == ImageFormat.Vmdk && o.Subformat == ImageSubformat.StreamOptimized;
        if (o.Compress && o.DestinationFormat == ImageFormat.Vmdk && o.Subformat == ImageSubformat.Default)
            return o with { Subformat = ImageSubformat.StreamOptimized };
        if (o.Compress && o.DestinationFormat != ImageFormat.Qcow2 && !streamOptimized)
            throw VDiskException.Invalid(destination, $"Compression is supported for qcow2 and streamOptimized vmdk output, not {FormatProbe.Name(o.DestinationFormat)}.");
        return streamOptimized ? o with { Compress = true } : o;
    }

    // No file the output writes (a VMDK writes its extents under their final names) may be a file the
    // conversion reads: the source chain, or the image the output will be an overlay of. Files are compared by
    // identity (device and inode), so a symbolic or hard link to an input counts as that input.
    private static void RefuseOverwritingInputs(IEnumerable<string> outputs, string destination, VirtualDisk input, string? backingPath)
    {
        if (HostFileInfo.SameFile(destination, input.Path))
            throw new VDiskException(VDiskErrorKind.DestinationIsSource, input.Path, destination == input.Path
                ? $"{input.Path}: the destination is the source image itself."
                : $"{destination} is a link to the source image {input.Path}; converting onto it would replace the source.");
        var inputs = new List<string>();
        for (var layer = input; layer != null; layer = layer.Backing)
            foreach (var file in layer.Driver.Files) inputs.Add(Path.GetFullPath(file.Name));
        if (backingPath != null) inputs.Add(Path.GetFullPath(backingPath));
        var identities = inputs.Select(HostFileInfo.Of).Where(f => f.HasIdentity).Select(f => (f.Device, f.Inode)).ToHashSet();
        var comparer = OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;
        foreach (var file in outputs)
        {
            var output = HostFileInfo.Of(file);
            if (inputs.Contains(file, comparer) || (output.HasIdentity && identities.Contains((output.Device, output.Inode))))
                throw VDiskException.Invalid(destination, $"{destination}: the output would overwrite '{file}', which the conversion reads.");
        }
    }
}
