// Get-VDiskSnapshot: the internal snapshots of qcow2 images (qemu-img snapshot -l), filtered by -Name
// (wildcards) or -Id. Read without locks, like qemu-img snapshot -l -U, so running VMs' disks can be listed.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Gets the internal snapshots of disk images.</summary>
[Cmdlet(VerbsCommon.Get, "VDiskSnapshot", DefaultParameterSetName = PathSet)]
[OutputType(typeof(VDiskSnapshot))]
public sealed class GetVDiskSnapshotCommand : SnapshotCmdletBase
{
    /// <summary>Writes the image's snapshots that -Name and -Id pick; a plain name or an id that is missing is an error.</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (Attempt(fullPath, () => RunCancellable(_ => SnapshotImage.List(fullPath))) is not { } snapshots) return;
        var picked = Pick(snapshots).ToList();
        foreach (var snapshot in picked) WriteObject(VDiskSnapshot.From(snapshot));
        ReportMissing(fullPath, snapshots, picked);
    }
}
