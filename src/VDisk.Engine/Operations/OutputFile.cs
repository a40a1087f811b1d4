// The life of one new image file (New-VDisk, Convert-VDisk to a file): temporary files that ended runs left in the
// folder are removed (TemporaryOutputs), the file it will replace is locked against QEMU (ReplacementLock), the
// image is written under a temporary name owned by this process and renamed into place only when complete, and
// on failure or cancellation the temporary file is removed. Also the check every destination passes first: what
// kind of file is there (DestinationKind).
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>One image being written under a temporary name beside its destination.</summary>
internal sealed class OutputFile : IDisposable
{
    private readonly bool _overwrite;
    private readonly ReplacementLock _replacing;
    private bool _committed;

    private OutputFile(string destination, bool overwrite, ReplacementLock replacing)
    {
        Destination = destination;
        _overwrite = overwrite;
        _replacing = replacing;
        Temp = TemporaryOutputs.NameFor(destination);
    }

    /// <summary>The full path the image gets when complete.</summary>
    public string Destination { get; }

    /// <summary>The temporary file to write the image into.</summary>
    public string Temp { get; }

    /// <summary>
    /// Prepares to write <paramref name="plan"/>: removes stale temporary files from its folder (each noted as a
    /// warning) and locks the files it replaces (see <see cref="ReplacementLock"/>). Nothing is written yet.
    /// </summary>
    public static OutputFile Begin(CreateImage.CreatePlan plan, bool overwrite)
    {
        foreach (string stale in TemporaryOutputs.RemoveStale(Path.GetDirectoryName(plan.Path) ?? "."))
            OperationWarnings.Add($"Removed '{stale}', the temporary output of an earlier run that was killed before it could clean up.");
        var inPlace = CreateImage.FilesOf(plan).Where(file => file != plan.Path);
        return new OutputFile(plan.Path, overwrite, ReplacementLock.Acquire(plan.Path, inPlace));
    }

    /// <summary>
    /// Renames the complete temporary file into place. Without overwriting, a destination that another process
    /// created meanwhile is an <see cref="VDiskErrorKind.AlreadyExists"/> error and is left as it is.
    /// </summary>
    public void Commit()
    {
        try
        {
            File.Move(Temp, Destination, _overwrite);
        }
        catch (IOException e) when (!_overwrite && HostFileInfo.Of(Destination).Type != HostFileType.Missing)
        {
            throw new VDiskException(VDiskErrorKind.AlreadyExists, Destination,
                $"{Destination} already exists: another process created it while this one was writing (use -Force to overwrite it).", e);
        }
        _committed = true;
    }

    /// <summary>Removes the temporary file unless it was committed, then releases the locks.</summary>
    public void Dispose()
    {
        try
        {
            if (!_committed) CreateImage.TryDelete(Temp);
        }
        finally
        {
            _replacing.Dispose();
        }
    }

    /// <summary>
    /// What is at <paramref name="path"/> (following symbolic links), refusing what no image can be written to with
    /// <see cref="VDiskErrorKind.UnsupportedDestination"/>: a character device, FIFO or socket (renaming a file over
    /// one would replace the node), and a block device unless <paramref name="blockDeviceAllowed"/> (only a
    /// conversion to raw writes into one).
    /// </summary>
    public static HostFileType DestinationKind(string path, bool blockDeviceAllowed)
    {
        var type = HostFileInfo.Of(path).Type;
        string? problem = type switch
        {
            HostFileType.CharacterDevice => "is a character device; an image can only be written to a file or a block device",
            HostFileType.Fifo => "is a FIFO (named pipe); an image can only be written to a file or a block device",
            HostFileType.Socket => "is a socket; an image can only be written to a file or a block device",
            HostFileType.BlockDevice when !blockDeviceAllowed =>
                "is a block device; only a conversion to raw writes into one (Convert-VDisk -DestinationFormat Raw -Force)",
            _ => null,
        };
        if (problem != null) throw new VDiskException(VDiskErrorKind.UnsupportedDestination, path, $"{path} {problem}.");
        return type;
    }
}
