// Remove-VDiskSnapshot: deletes internal snapshots of qcow2 images (qemu-img snapshot -d) and gives back the
// clusters only they used. -Name takes wildcards; VDiskSnapshot objects bind by Path and Id, so
// Get-VDiskSnapshot ... | Remove-VDiskSnapshot deletes exactly what was listed. Asks first (ConfirmImpact High).
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Deletes internal snapshots of disk images.</summary>
[Cmdlet(VerbsCommon.Remove, "VDiskSnapshot", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(VDiskSnapshot))]
public sealed class RemoveVDiskSnapshotCommand : SnapshotCmdletBase
{
    /// <summary>Writes each snapshot that was deleted.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Deletes every snapshot -Name and -Id pick in the image (at least one of them must be given).</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (Name is null && Id is null)
        {
            WriteError(VDiskErrors.InvalidArgument("Say which snapshots to delete with -Name or -Id (or pipe them from Get-VDiskSnapshot).", fullPath));
            return;
        }
        if (Attempt(fullPath, () => RunCancellable(_ => SnapshotImage.List(fullPath))) is not { } snapshots) return;
        var picked = Pick(snapshots).ToList();
        ReportMissing(fullPath, snapshots, picked);
        foreach (var snapshot in picked)
        {
            if (!ShouldProcess(fullPath, $"Delete snapshot {snapshot.Id} ('{snapshot.Name}', {snapshot.Created.ToLocalTime():g})")) continue;
            if (Attempt(fullPath, () => RunWithProgress("Remove-VDiskSnapshot", $"Deleting snapshot '{snapshot.Name}' of {fullPath}", 0,
                    (_, _) => SnapshotImage.Delete(fullPath, snapshot.Id))) is { } removed && PassThru)
                WriteObject(VDiskSnapshot.From(removed));
        }
    }
}
