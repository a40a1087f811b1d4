// Backing chains (DESIGN.md "Chain"): resolving backing names against the overlay's folder (StoredFileNames),
// the recorded backing format winning over probing, a depth limit and loop detection. Every file is checked
// before it is opened (HostFileKind: no FIFOs or character devices), and the names a probed VMDK gives for
// other files must stay in its folder.
using VDisk.Engine.Core;
using VDisk.Engine.Formats;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Chain;

/// <summary>One image of a chain, opened on its own (without its backing image).</summary>
/// <param name="Depth">0 for the top image, 1 for its backing image, ...</param>
/// <param name="Path">Full path of the file.</param>
/// <param name="Driver">The open driver (owned by whoever enumerates).</param>
public sealed record ChainLayer(int Depth, string Path, IImageDriver Driver);

/// <summary>Opens images and walks their backing chains.</summary>
public static class ImageChain
{
    /// <summary>Deepest chain accepted: deeper chains are refused as a likely loop or misconfiguration.</summary>
    public const int MaxDepth = 256;

    /// <summary>
    /// Test seam: wraps every storage opened for writing in the current async flow (tests inject a
    /// FaultInjectingStorage to simulate a full disk or an I/O error mid-operation).
    /// </summary>
    internal static readonly AsyncLocal<Func<IStorage, IStorage>?> WritableStorageWrapper = new();

    /// <summary>Opens an image with its backing chain as one <see cref="VirtualDisk"/>.</summary>
    public static VirtualDisk Open(string path, OpenOptions? options = null)
    {
        options ??= OpenOptions.ReadOnly;
        var layers = new List<ChainLayer>();
        try
        {
            if (options.Snapshot != null && options.Writable)
                throw VDiskException.Invalid(path, $"{path}: an internal snapshot can only be opened read-only.");
            if (options.ForceShare && options.Writable)
                throw VDiskException.Invalid(path, $"{path}: force-share (no locking) is only allowed for reading.");
            foreach (var layer in Walk(path, options.Format, options.Writable, options.CacheMode, options.BackingCacheMode, options.Snapshot, options.ForceShare))
            {
                layers.Add(layer);
                if (!options.OpenBacking) break;
            }
            VirtualDisk? disk = null;
            for (int i = layers.Count - 1; i >= 0; i--)
                disk = new VirtualDisk(layers[i].Path, layers[i].Driver, disk, i == 0 && options.Writable);
            return disk!;
        }
        catch
        {
            foreach (var layer in layers) layer.Driver.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Yields each image of the chain from the top down, each opened without its backing image. The caller
    /// owns (and must dispose) every yielded driver. A missing backing file, a loop or a chain deeper than
    /// <see cref="MaxDepth"/> throws a <see cref="VDiskException"/> naming the chain found so far.
    /// </summary>
    public static IEnumerable<ChainLayer> Walk(string path, ImageFormat? format = null, bool writableTop = false,
        CacheMode topCache = CacheMode.Writeback, CacheMode backingCache = CacheMode.Writeback, string? topSnapshot = null, bool forceShare = false)
    {
        var seen = new List<string>();
        if (path.Contains('\0')) throw VDiskException.Invalid(path, $"'{StoredFileNames.Printable(path)}': a path cannot contain a NUL character.");
        string current = System.IO.Path.GetFullPath(path);
        ImageFormat? currentFormat = format;
        for (int depth = 0; ; depth++)
        {
            if (seen.Contains(current, PathComparer))
                throw new VDiskException(VDiskErrorKind.ChainLoop, seen[0],
                    $"{seen[0]}: the backing chain loops back to '{current}' (chain: {Describe(seen, current)}).");
            if (depth > MaxDepth)
                throw new VDiskException(VDiskErrorKind.ChainTooDeep, seen[0],
                    $"{seen[0]}: the backing chain is deeper than {MaxDepth} images.");
            if (depth > 0 && !HostFileKind.Exists(current))
                throw new VDiskException(VDiskErrorKind.BackingMissing, seen[^1],
                    $"{seen[^1]}: backing file '{StoredFileNames.Printable(current)}' not found (chain: {Describe(seen, current)}).");
            if (depth > 0) HostFileKind.EnsureReadable(current, $"the backing file of '{seen[^1]}'");
            var driver = OpenFile(current, currentFormat, depth == 0 && writableTop, depth == 0 ? topCache : backingCache, depth == 0 ? topSnapshot : null, forceShare);
            seen.Add(current);
            yield return new ChainLayer(depth, current, driver);
            if (driver.Backing is not { } backing) yield break;
            string next = ResolveBackingPath(current, backing.Path);
            if (backing.Format is null && RecordedBackingFormat(driver) is { Length: > 0 } recorded)
                throw VDiskException.Unsupported(current, $"the backing format '{StoredFileNames.Printable(recorded)}' it records is not one VDisk reads (raw, qcow2, vmdk, vdi); the backing file is not probed instead.");
            if (backing.ConfinedToFolder && !StoredFileNames.IsInFolderOf(current, next))
                throw VDiskException.Unsupported(current, $"the parent file '{StoredFileNames.Printable(next)}' it names is outside its folder. " + ProbedOutsideFolderAdvice);
            current = next;
            currentFormat = backing.Format;
        }
    }

    /// <summary>Opens one image file without its backing chain.</summary>
    public static IImageDriver OpenFile(string path, ImageFormat? format, bool writable, CacheMode cache = CacheMode.Writeback,
        string? snapshot = null, bool forceShare = false)
    {
        var storage = OpenStorage(path, writable, cache, forceShare);
        try
        {
            var probe = format is null ? FormatProbe.Probe(storage) : null;
            if (probe?.Warning is { } warning) EngineWarnings.Warn(warning);
            var actual = format ?? probe!.Format;
            bool confine = probe?.Format == ImageFormat.Vmdk; // a probed VMDK names files in its own folder only
            return snapshot is null ? ImageDrivers.Open(storage, actual, writable, confine) : ImageDrivers.OpenSnapshot(storage, actual, snapshot);
        }
        catch
        {
            storage.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens an image file's storage, with QEMU's locks (none with <paramref name="forceShare"/> when reading), after
    /// checking it is a regular file or block device; no format is probed.
    /// </summary>
    internal static IStorage OpenStorage(string path, bool writable, CacheMode cache = CacheMode.Writeback, bool forceShare = false)
    {
        if (path.Contains('\0')) throw VDiskException.Invalid(path, $"'{StoredFileNames.Printable(path)}': a path cannot contain a NUL character.");
        path = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(path))
            throw new VDiskException(VDiskErrorKind.NotAnImage, path, $"{path} is a directory, not a disk image.");
        if (!HostFileKind.Exists(path))
            throw new VDiskException(VDiskErrorKind.NotFound, path, $"{path}: no such file{DanglingLink(path)}.");
        var type = HostFileKind.EnsureReadable(path);
        IStorage storage;
        try
        {
            storage = FileStorage.Open(path, writable, cache, forceShare && !writable ? ImageLockMode.None : null);
            if (type == HostFileType.BlockDevice) storage = new DeviceSizedStorage(storage, HostFileKind.BlockDeviceLength(path) ?? 0);
            if (writable && WritableStorageWrapper.Value is { } wrap) storage = wrap(storage);
        }
        catch (UnauthorizedAccessException e)
        {
            throw new VDiskException(VDiskErrorKind.ReadOnly, path, $"{path}: permission denied ({e.Message}).", e);
        }
        catch (IOException e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new VDiskException(VDiskErrorKind.NotFound, path, $"{path}: no such file{DanglingLink(path)}.", e); // removed meanwhile
        }
        catch (IOException e)
        {
            throw new VDiskException(VDiskErrorKind.IoError, path, $"{path}: {e.Message}", e);
        }
        return storage;
    }

    /// <summary>
    /// Full path of a backing file named <paramref name="stored"/> inside the image at <paramref name="imagePath"/>; a
    /// name that cannot be a file name is a Corrupt or Unsupported error about the image (see <see cref="StoredFileNames"/>).
    /// </summary>
    public static string ResolveBackingPath(string imagePath, string stored) => StoredFileNames.Resolve(imagePath, stored, "backing file name");

    /// <summary>What to do about a probed VMDK that names a file outside its folder.</summary>
    internal const string ProbedOutsideFolderAdvice =
        "Its format was probed, not declared, and a probed VMDK may only name files in its own folder, because its text may come from a guest. " +
        "If you trust this descriptor, declare its format (-SourceFormat Vmdk, or -Format Vmdk for Get-VDisk and Get-VDiskChain).";

    /// <summary>
    /// The string to store as the backing name of a new overlay: relative to the overlay's folder when the
    /// caller gave a relative path (as qemu-img does), absolute when the caller gave an absolute one.
    /// </summary>
    public static string BackingNameFor(string overlayPath, string backingAsGiven, string backingFullPath)
    {
        if (System.IO.Path.IsPathRooted(backingAsGiven)) return backingFullPath;
        string folder = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(overlayPath)) ?? ".";
        return System.IO.Path.GetRelativePath(folder, backingFullPath);
    }

    // The backing format an image records, as text (only qcow2 records one; the VMDK parent is always VMDK).
    private static string? RecordedBackingFormat(IImageDriver driver) => (driver as Formats.Qcow2.Qcow2Driver)?.Header.BackingFormat?.Trim();

    private static StringComparer PathComparer => OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal;

    private static string Describe(List<string> seen, string next) => string.Join(" -> ", seen.Append(next).Select(StoredFileNames.Printable));

    // " (it is a symbolic link to 'x', which does not exist)" for a dangling link, else nothing.
    private static string DanglingLink(string path)
        => new FileInfo(path).LinkTarget is { } target ? $" (it is a symbolic link to '{target}', which does not exist)" : string.Empty;
}
