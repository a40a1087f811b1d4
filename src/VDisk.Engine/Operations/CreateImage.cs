// Creating images (DESIGN.md "Operations": Create). Written to a temporary file in the destination's
// folder and renamed into place on success, so a failed or cancelled create leaves nothing behind and
// never destroys a file it was asked to overwrite.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Formats.Raw;
using VDisk.Engine.Formats.Vmdk;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>Creates new images.</summary>
public static class CreateImage
{
    /// <summary>
    /// Creates an image at <paramref name="path"/>. Fails with <see cref="VDiskErrorKind.AlreadyExists"/> when the
    /// file exists and <paramref name="overwrite"/> is false. Progress reports bytes preallocated.
    /// </summary>
    public static void Run(string path, CreateOptions options, bool overwrite = false,
        IProgress<long>? progress = null, CancellationToken cancel = default)
    {
        path = Path.GetFullPath(path);
        if (Directory.Exists(path))
            throw VDiskException.Invalid(path, $"{path} is a directory.");
        if (File.Exists(path) && !overwrite)
            throw new VDiskException(VDiskErrorKind.AlreadyExists, path, $"{path} already exists (use -Force to overwrite it).");
        string? folder = Path.GetDirectoryName(path);
        if (folder != null && !Directory.Exists(folder))
            throw new VDiskException(VDiskErrorKind.NotFound, path, $"{path}: the folder '{folder}' does not exist.");

        var (size, backingName, backingFormat) = ResolveBacking(path, options);
        if (size < 0) throw VDiskException.Invalid(path, $"Size {size} is invalid.");
        size = (size + 511) / 512 * 512; // qemu-img rounds sizes up to whole sectors
        options = options with { Size = size };
        if (options.Format == ImageFormat.Qcow2) Qcow2Creator.Validate(options, path);
        else if (options.Format == ImageFormat.Vmdk) VmdkCreator.Validate(options, path);
        else if (options.Format == ImageFormat.Raw && backingName != null)
            throw VDiskException.Invalid(path, "Raw images cannot have a backing file; use qcow2 for an overlay.");
        else if (options.Format != ImageFormat.Raw)
            throw VDiskException.Unsupported(path, $"creating {FormatProbe.Name(options.Format)} images is not supported yet.");

        if (options.Format == ImageFormat.Vmdk)
        {
            // VMDK may write several files; VmdkCreator applies the same temporary-name-then-rename rule to all of them.
            VmdkCreator.Create(path, options, backingName, backingFormat, overwrite, progress, cancel);
            return;
        }

        string temp = Path.Combine(folder ?? ".", $".{Path.GetFileName(path)}.vdisk-{Guid.NewGuid():N}.tmp");
        try
        {
            WriteImage(temp, options, size, backingName, backingFormat, progress, cancel);
            File.Move(temp, path, overwrite);
        }
        catch (Exception e)
        {
            TryDelete(temp);
            if (e is UnauthorizedAccessException or IOException and not FileNotFoundException)
                throw new VDiskException(e is UnauthorizedAccessException ? VDiskErrorKind.ReadOnly : VDiskErrorKind.IoError, path, $"{path}: {e.Message}", e);
            throw;
        }
    }

    private static void WriteImage(string temp, CreateOptions options, long size, string? backingName,
        ImageFormat? backingFormat, IProgress<long>? progress, CancellationToken cancel)
    {
        var storage = FileStorage.Create(temp, overwrite: false);
        if (options.Format == ImageFormat.Raw)
        {
            using (storage) RawDriver.Create(storage, size, options.Preallocation, cancel);
            return;
        }
        Qcow2Creator.WriteEmpty(storage, options, size, backingName, backingFormat);
        if (options.Preallocation == Preallocation.Off)
        {
            storage.Flush();
            storage.Dispose();
            return;
        }
        using var driver = Qcow2Driver.Open(storage, writable: true);
        driver.Preallocate(options.Preallocation, progress, cancel);
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

    private static void TryDelete(string file)
    {
        try { File.Delete(file); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
