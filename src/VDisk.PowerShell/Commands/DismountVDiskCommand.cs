// Dismount-VDisk (issue 12): undoes Mount-VDisk (VDiskMount objects from the pipeline, -MountPath, or -All): each
// partition unmounted with fusermount3 -u (a kernel loop mount with umount, its loop device detached), the nbdfuse and fuse2fs processes it started stopped by pid, the NBD
// server stopped (the image closed), the folders it created and its private temp folder removed. -MountPath also
// cleans a mount left behind there by a session that was killed.
using System.Management.Automation;

namespace VDisk.PowerShell.Commands;

/// <summary>Unmounts images mounted by Mount-VDisk.</summary>
[Cmdlet(VerbsData.Dismount, "VDisk", DefaultParameterSetName = InputSet, SupportsShouldProcess = true)]
[OutputType(typeof(VDiskMount))]
public sealed class DismountVDiskCommand : VDiskCmdletBase
{
    private const string InputSet = "InputObject";
    private const string MountPathSet = "MountPath";
    private const string AllSet = "All";
    /// <summary>Error id for a -MountPath where nothing is mounted.</summary>
    public const string NotMountedId = "NotMounted";

    /// <summary>The mounts to undo (VDiskMount objects from Mount-VDisk).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ParameterSetName = InputSet)]
    [ValidateNotNull]
    public VDiskMount[] InputObject { get; set; } = Array.Empty<VDiskMount>();

    /// <summary>The mount paths to undo (as given to Mount-VDisk -MountPath).</summary>
    [Parameter(Mandatory = true, ParameterSetName = MountPathSet, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[] MountPath { get; set; } = Array.Empty<string>();

    /// <summary>Undo every mount of this session.</summary>
    [Parameter(Mandatory = true, ParameterSetName = AllSet)]
    public SwitchParameter All { get; set; }

    /// <summary>Write each mount undone (its Mounted property now False).</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Undoes the mounts given.</summary>
    protected override void ProcessRecord()
    {
        if (ParameterSetName == MountPathSet)
        {
            foreach (string typed in MountPath)
            {
                if (ResolveLiteralPath(typed) is not { } full) continue;
                full = Path.TrimEndingDirectorySeparator(full);
                if (MountRegistry.At(full) is { } mount) Dismount(mount);
                else DismountStale(full);
            }
            return;
        }
        foreach (var mount in All ? MountRegistry.All : InputObject) Dismount(mount);
    }

    private void Dismount(VDiskMount mount)
    {
        if (!ShouldProcess($"{mount.MountPath} ({mount.Path})", "Dismount")) return;
        Attempt(mount.Path, () =>
        {
            if (!MountRegistry.Dismount(mount, WriteVerbose)) WriteVerbose($"{mount.MountPath} was dismounted already.");
            return mount;
        });
        if (PassThru) WriteObject(mount);
    }

    // A -MountPath this session did not mount: a marker left by a process that has ended is cleaned up.
    private void DismountStale(string full)
    {
        if (MountSession.ReadState(full) is not { } state)
        {
            WriteError(new ErrorRecord(new InvalidOperationException($"Nothing is mounted at {full} by Mount-VDisk."), NotMountedId, ErrorCategory.ObjectNotFound, full));
            return;
        }
        if (MountSession.OwnerAlive(state) && state.OwnerPid != Environment.ProcessId)
        {
            WriteError(new ErrorRecord(new InvalidOperationException(
                $"{full} holds a mount of {state.Image} made by process {state.OwnerPid}, which is still running; dismount it there."),
                MountVDiskCommand.MountPathInUseId, ErrorCategory.ResourceBusy, full));
            return;
        }
        if (!ShouldProcess($"{full} ({state.Image}, left by process {state.OwnerPid})", "Clean up stale mount")) return;
        Attempt(full, () =>
        {
            MountSession.Teardown(state, WriteVerbose);
            return state;
        });
    }
}
