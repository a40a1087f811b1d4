// Mount-VDisk (issue 12, Linux): a read-only file tree of any image or backup point, all in userspace. The image is
// opened read-only without QEMU's locks (like Get-VDisk / qemu-img -U, so a running VM's disk or a backup point can
// be browsed), served by an in-process read-only NBD server on a Unix socket in a private temp folder, exposed as a
// file by nbdfuse, and each ext2/3/4 partition (or a whole-disk file system, partition 0) is mounted read-only with
// fuse2fs at <MountPath>/p<N>. xfs, btrfs, FAT, exFAT and NTFS are mounted by the kernel from a read-only loop device
// where this process may do so (LoopMount: root / CAP_SYS_ADMIN, /dev/loop-control, the kernel's driver); otherwise,
// and for anything else, the partition is listed as skipped with the exact reason, and a warning. See MountSession
// for the marker file through which a mount left by a killed session is cleaned by the next Mount-VDisk on that path.
using System.Management.Automation;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Nbd;
using VDisk.Engine.Partitions;

namespace VDisk.PowerShell.Commands;

/// <summary>Mounts the file systems of a disk image read-only.</summary>
[Cmdlet(VerbsData.Mount, "VDisk", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
[OutputType(typeof(VDiskMount))]
public sealed class MountVDiskCommand : EncryptedImageInputCmdletBase
{
    /// <summary>Error id for nbdfuse, fuse2fs or fusermount3 not installed.</summary>
    public const string ToolMissingId = "ToolMissing";
    /// <summary>Error id for a mount path another mount holds.</summary>
    public const string MountPathInUseId = "MountPathInUse";
    /// <summary>Error id for nbdfuse or fuse2fs failing.</summary>
    public const string MountFailedId = "MountFailed";

    /// <summary>The file systems fuse2fs mounts (always, without the kernel's loop mount).</summary>
    public static readonly IReadOnlyList<string> SupportedFileSystems = new[] { "ext2", "ext3", "ext4" };

    /// <summary>The file systems mounted through the kernel's loop mount, where this process may use it (and the kernel has the driver).</summary>
    public static IReadOnlyList<string> LoopFileSystems => LoopMount.KernelTypes.Keys.ToList();

    /// <summary>
    /// Why this process cannot use the kernel's loop mount (not permitted without CAP_SYS_ADMIN, no loop device,
    /// losetup/mount not installed), or null when it can. Checked afresh at each call.
    /// </summary>
    public static string? LoopMountUnavailable => LoopMount.Unavailable();

    /// <summary>The folder under which each partition is mounted as p&lt;N&gt;; created when missing.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string MountPath { get; set; } = "";

    /// <summary>Format of the image; by default it is probed.</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    private string _mountPath = "";
    private readonly Dictionary<string, string> _tools = new();
    private readonly Lazy<string?> _loopUnavailable = new(LoopMount.Unavailable);

    /// <summary>Checks the platform and the tools, and resolves -MountPath.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (!OperatingSystem.IsLinux())
        {
            var (id, category) = VDiskErrors.Classify(VDiskErrorKind.Unsupported);
            ThrowTerminatingError(new ErrorRecord(new PlatformNotSupportedException(
                "Mount-VDisk works on Linux only (it uses FUSE: nbdfuse and fuse2fs). Elsewhere, serve the image with Export-VDisk and mount it from a Linux machine."),
                id, category, null));
        }
        foreach (var (tool, package) in ToolLocator.Packages)
        {
            if (ToolLocator.Find(tool) is { } found)
            {
                _tools[tool] = found;
                continue;
            }
            ThrowTerminatingError(new ErrorRecord(new FileNotFoundException(
                $"Mount-VDisk needs {tool}, which is not installed (or not on PATH): install the Debian package {package} (apt-get install {package}). " +
                "Mount-VDisk uses nbdfuse (libnbd-bin), fuse2fs (fuse2fs) and fusermount3 (fuse3)."), ToolMissingId, ErrorCategory.NotInstalled, tool));
        }
        _mountPath = System.IO.Path.TrimEndingDirectorySeparator(ResolveLiteralPathOrStop(MountPath));
    }

    /// <summary>Mounts one image.</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (!ShouldProcess(fullPath, $"Mount read-only at {_mountPath}")) return;
        if (!ClearMountPath(fullPath)) return;
        var format = IsBound(nameof(Format)) ? Format.ToEngine() : (ImageFormat?)null;
        object? outcome = Attempt<object>(fullPath, () =>
        {
            try { return Mount(fullPath, format); }
            catch (MountToolException e) { return e; }
        });
        if (outcome is MountToolException failure)
        {
            WriteError(new ErrorRecord(failure, MountFailedId, ErrorCategory.OpenError, fullPath)
            {
                ErrorDetails = new ErrorDetails($"{fullPath}: mounting at {_mountPath} failed: {failure.Message}"),
            });
            return;
        }
        if (outcome is not VDiskMount mount) return;
        foreach (var p in mount.Partitions.Where(p => p.SkippedReason != null)) WriteWarning($"{fullPath}: partition {p.Number} not mounted: {p.SkippedReason}");
        if (mount.MountedAt.Count == 0)
        {
            // Nothing to browse: stop what was started rather than keep an empty mount around.
            WriteWarning(mount.Partitions.Count == 0
                ? $"{fullPath}: no partition table and no file system recognised; nothing was mounted."
                : $"{fullPath}: no file system Mount-VDisk could mount; nothing was mounted.");
            MountRegistry.Dismount(mount, WriteVerbose);
        }
        else MountRegistry.Add(mount);
        WriteObject(mount);
    }

    // A mount of this session or of a live process on the path is an error; one left by a dead process is cleaned.
    private bool ClearMountPath(string fullPath)
    {
        if (MountRegistry.At(_mountPath) is { } mine)
        {
            WriteError(InUse(fullPath, $"{_mountPath} holds mount {mine.Id} of {mine.Path} in this session; Dismount-VDisk it first."));
            return false;
        }
        if (MountSession.ReadState(_mountPath) is not { } state) return true;
        if (MountSession.OwnerAlive(state) && state.OwnerPid != Environment.ProcessId)
        {
            WriteError(InUse(fullPath, $"{_mountPath} holds a mount of {state.Image} made by process {state.OwnerPid}, which is still running; dismount it there."));
            return false;
        }
        WriteWarning(state.OwnerPid == Environment.ProcessId
            ? $"{_mountPath}: cleaning up a mount of {state.Image} left behind by this session (its dismount did not finish)."
            : $"{_mountPath}: cleaning up a mount of {state.Image} left behind by process {state.OwnerPid}, which has ended.");
        MountSession.Teardown(state, WriteVerbose);
        return true;
    }

    private ErrorRecord InUse(string fullPath, string message) =>
        new(new InvalidOperationException(message), MountPathInUseId, ErrorCategory.ResourceBusy, fullPath)
        {
            ErrorDetails = new ErrorDetails(message),
        };

    private VDiskMount Mount(string fullPath, ImageFormat? format)
    {
        var disk = ImageChain.Open(fullPath, new OpenOptions { Format = format, ForceShare = true });
        MountSession? session = null;
        try
        {
            var table = PartitionReader.Read(disk);
            foreach (var problem in table.Problems) WriteWarning($"{fullPath}: {problem}");
            string privateFolder = System.IO.Path.Combine(System.IO.Path.GetTempPath(), $"vdisk-mount-{Environment.ProcessId}-{Guid.NewGuid():N}");
            if (OperatingSystem.IsWindows()) throw new PlatformNotSupportedException();
            Directory.CreateDirectory(privateFolder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            session = new MountSession(fullPath, _mountPath, privateFolder, Cancellation);
            if (!Directory.Exists(_mountPath))
            {
                Directory.CreateDirectory(_mountPath);
                session.Created(_mountPath);
            }
            session.SaveState();

            var server = new NbdServer(new[] { new NbdExport("", disk, false, fullPath) }) { ConnectionError = _ => { } };
            session.Server = server; // disposes the disk from now on
            disk = null;
            using (ExecutionContext.SuppressFlow()) server.ListenUnix(session.Socket);
            session.StartNbdFuse(_tools["nbdfuse"]);

            var partitions = new List<VDiskMountPartition>();
            foreach (var partition in table.Partitions)
            {
                string fs = partition.FileSystem.Name;
                string? skipped = null, mountedAt = null;
                bool fuse = SupportedFileSystems.Contains(fs);
                LoopMount.KernelTypes.TryGetValue(fs, out string? kernelType);
                if (partition.IsExtended) skipped = "an extended partition (a container of logical partitions)";
                else if (!fuse && kernelType == null)
                    skipped = fs == Engine.Partitions.FileSystemInfo.Unknown.Name ? "no file system recognised" : $"file system {fs} is not supported (Mount-VDisk mounts ext2, ext3 and ext4 with fuse2fs, and {string.Join(", ", LoopFileSystems)} with the kernel's loop mount)";
                else if (!fuse && _loopUnavailable.Value is { } why)
                    skipped = $"file system {fs} needs the kernel's loop mount, which cannot be used here: {why}. Without it Mount-VDisk mounts ext2, ext3 and ext4 (with fuse2fs).";
                else
                {
                    string folder = System.IO.Path.Combine(_mountPath, $"p{partition.Number}");
                    if (Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any()) skipped = $"{folder} exists and is not empty";
                    else
                    {
                        if (!Directory.Exists(folder))
                        {
                            Directory.CreateDirectory(folder);
                            session.Created(folder);
                        }
                        try
                        {
                            if (fuse) session.StartFuse2fs(_tools["fuse2fs"], partition.Start, folder);
                            else session.StartLoopMount(kernelType!, partition.Start, partition.Size, folder);
                            mountedAt = folder;
                        }
                        catch (MountToolException e)
                        {
                            // A damaged file system does not keep the other partitions from being mounted.
                            skipped = fuse ? $"fuse2fs could not mount it: {e.Message}"
                                : !LoopMount.KernelHas(kernelType!)
                                    ? $"the kernel has no {kernelType} driver (it is not in /proc/filesystems), so the loop mount failed ({e.Message}). Without it Mount-VDisk mounts ext2, ext3 and ext4 (with fuse2fs)."
                                    : $"the kernel's loop mount failed: {e.Message}";
                        }
                    }
                }
                partitions.Add(new VDiskMountPartition
                {
                    Number = partition.Number, FileSystem = fs, Start = partition.Start, Size = partition.Size,
                    MountedAt = mountedAt, SkippedReason = skipped,
                });
            }
            session.SaveState();
            return new VDiskMount(fullPath, _mountPath, partitions, session);
        }
        catch
        {
            disk?.Dispose();
            session?.Teardown(WriteVerbose);
            throw;
        }
    }
}
