// Creating images (DESIGN.md "Operations": Create). Written to a temporary file in the destination's
// folder and renamed into place on success (OutputFile), so a failed or cancelled create leaves nothing behind,
// never destroys a file it was asked to overwrite, and never replaces a file a VM has open.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Formats.Raw;
using VDisk.Engine.Formats.Vdi;
using VDisk.Engine.Formats.Vmdk;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>Creates new images.</summary>
public static class CreateImage
{
    /// <summary>The largest virtual size: the largest whole number of 512-byte sectors a signed 64-bit size holds.</summary>
    public const long MaxSize = long.MaxValue / 512 * 512;

    /// <summary>
    /// Creates an image at <paramref name="path"/>. Fails with <see cref="VDiskErrorKind.AlreadyExists"/> when the
    /// file exists and <paramref name="overwrite"/> is false, and with <see cref="VDiskErrorKind.InUse"/> when the file
    /// it would replace is open in a VM. Progress reports bytes preallocated.
    /// </summary>
    public static CreateResult Run(string path, CreateOptions options, bool overwrite = false,
        IProgress<long>? progress = null, CancellationToken cancel = default)
    {
        var plan = Plan(path, options, overwrite);
        using var warnings = OperationWarnings.Collect();
        try
        {
            using var output = OutputFile.Begin(plan, overwrite);
            WriteImage(output.Temp, plan.Path, plan.Options, plan.Size, plan.BackingName, plan.BackingFormat, progress, cancel);
            output.Commit();
        }
        catch (Exception e) when (WrapHostError(e, plan.Path) is var wrapped && wrapped != e)
        {
            throw wrapped;
        }
        return new CreateResult { Path = plan.Path, Warnings = warnings.Messages };
    }

    /// <summary>A validated creation: full path, options with the final size, and the backing name to store.</summary>
    internal sealed record CreatePlan(string Path, CreateOptions Options, long Size, string? BackingName, ImageFormat? BackingFormat);

    /// <summary>Checks the destination and options and resolves the backing image, touching no file.</summary>
    internal static CreatePlan Plan(string path, CreateOptions options, bool overwrite)
    {
        path = Path.GetFullPath(path);
        if (Directory.Exists(path))
            throw VDiskException.Invalid(path, $"{path} is a directory.");
        OutputFile.DestinationKind(path, blockDeviceAllowed: false);
        if (File.Exists(path) && !overwrite)
            throw new VDiskException(VDiskErrorKind.AlreadyExists, path, $"{path} already exists (use -Force to overwrite it).");
        string? folder = Path.GetDirectoryName(path);
        if (folder != null && !Directory.Exists(folder))
            throw new VDiskException(VDiskErrorKind.NotFound, path, $"{path}: the folder '{folder}' does not exist.");

        var (size, backingName, backingFormat) = ResolveBacking(path, options);
        if (size < 0) throw VDiskException.Invalid(path, $"Size {size} is invalid.");
        if (size > MaxSize)
            throw VDiskException.Invalid(path, $"Size {size} bytes is too large: the largest disk is {MaxSize} bytes (8 EiB less 512 bytes).");
        size = (size + 511) / 512 * 512; // qemu-img rounds sizes up to whole sectors
        options = options with { Size = size };
        if (options.Encryption != null && options.Format != ImageFormat.Qcow2)
            throw VDiskException.Invalid(path, $"{path}: only qcow2 images can be encrypted (LUKS inside qcow2, as qemu-img makes them); {FormatProbe.Name(options.Format)} images cannot.");
        if (options.Format == ImageFormat.Qcow2) Qcow2Creator.Validate(options, path);
        else if (options.Format == ImageFormat.Vdi) VdiCreator.Validate(options, backingName, path);
        else if (options.Format == ImageFormat.Vmdk) VmdkCreator.Validate(options, path, overwrite);
        else if (options.Format == ImageFormat.Raw && backingName != null)
            throw VDiskException.Invalid(path, "Raw images cannot have a backing file; use qcow2 for an overlay.");
        else if (options.Format != ImageFormat.Raw)
            throw VDiskException.Unsupported(path, $"creating {FormatProbe.Name(options.Format)} images is not supported yet.");
        return new CreatePlan(path, options, size, backingName, backingFormat);
    }

    /// <summary>Full paths of every file the planned image writes (VMDK extents as well as the main file).</summary>
    internal static IEnumerable<string> FilesOf(CreatePlan plan) => plan.Options.Format == ImageFormat.Vmdk
        ? VmdkCreator.FilesFor(plan.Path, plan.Options.Subformat, plan.Size)
        : new[] { plan.Path };

    /// <summary>Writes the planned image into <paramref name="file"/> (a temporary name beside the destination).</summary>
    internal static void Write(CreatePlan plan, string file, CancellationToken cancel)
        => WriteImage(file, plan.Path, plan.Options, plan.Size, plan.BackingName, plan.BackingFormat, null, cancel);

    /// <summary>Turns host I/O exceptions into VDiskExceptions naming <paramref name="path"/>; passes others through.</summary>
    internal static Exception WrapHostError(Exception e, string path) => e switch
    {
        UnauthorizedAccessException => new VDiskException(VDiskErrorKind.ReadOnly, path, $"{path}: {e.Message}", e),
        IOException and not FileNotFoundException => new VDiskException(VDiskErrorKind.IoError, path, $"{path}: {e.Message}", e),
        _ => e,
    };

    private static void WriteImage(string temp, string path, CreateOptions options, long size, string? backingName,
        ImageFormat? backingFormat, IProgress<long>? progress, CancellationToken cancel)
    {
        if (options.Format == ImageFormat.Vmdk)
        {
            VmdkCreator.Write(temp, path, options, backingName, backingFormat, cancel); // extents under final names; see VmdkCreator
            return;
        }
        var storage = FileStorage.Create(temp, overwrite: false);
        if (options.Format == ImageFormat.Raw)
        {
            using (storage) RawDriver.Create(storage, size, options.Preallocation, progress, cancel);
            return;
        }
        if (options.Format == ImageFormat.Vdi)
        {
            using (storage) VdiCreator.WriteEmpty(storage, options, size);
            return;
        }
        Qcow2Driver? driver = null;
        Crypto.SectorCipher? cipher = null;
        try
        {
            Qcow2Creator.WriteEmpty(storage, options, size, backingName, backingFormat, out cipher);
            if (options.Preallocation == Preallocation.Off)
            {
                storage.Flush();
                return;
            }
            driver = Qcow2Driver.Open(storage, writable: true, cipher);
            cipher = null; // the driver owns it
            driver.Preallocate(options.Preallocation, progress, cancel);
        }
        finally
        {
            cipher?.Dispose();
            if (driver != null) driver.Dispose(); // closes the storage too
            else storage.Dispose(); // also on failure: an open handle would keep a removed file's space in use
        }
    }

    // The backing image must open; its size is the default size and its probed format is recorded.
    private static (long Size, string? Name, ImageFormat? Format) ResolveBacking(string path, CreateOptions options)
    {
        if (options.BackingPath is null)
        {
            if (options.Size is null) throw VDiskException.Invalid(path, "A size is needed when there is no backing image.");
            return (options.Size.Value, null, null);
        }
        string backingFull = Path.GetFullPath(options.BackingPath);
        if (string.Equals(backingFull, path, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal))
            throw VDiskException.Invalid(path, $"{path} cannot be its own backing file.");
        using var backing = ImageChain.Open(backingFull, new OpenOptions { Format = options.BackingFormat });
        string name = options.BackingPathRelative
            ? Path.GetRelativePath(Path.GetDirectoryName(path)!, backingFull)
            : backingFull;
        return (options.Size ?? backing.Length, name, backing.Format);
    }

    internal static void TryDelete(string file)
    {
        VmdkCreator.DeleteExtentsOf(file); // a temporary VMDK descriptor takes its extent files with it
        try { File.Delete(file); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>What creating an image did.</summary>
public sealed record CreateResult
{
    /// <summary>Full path of the new image.</summary>
    public required string Path { get; init; }
    /// <summary>Things the caller should be told, such as preallocation falling back to writing zeroes.</summary>
    public IReadOnlyList<string> Warnings { get; init; } = Array.Empty<string>();
}
