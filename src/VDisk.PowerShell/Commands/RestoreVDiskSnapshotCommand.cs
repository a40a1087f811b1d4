// Restore-VDiskSnapshot: reverts a qcow2 image to one of its internal snapshots (qemu-img snapshot -a): the data
// and the virtual size it recorded. What the image held since the snapshot is discarded, so it asks first
// (ConfirmImpact High). A power cut leaves the image before or after the revert, never a mix.
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Reverts disk images to an internal snapshot.</summary>
[Cmdlet(VerbsData.Restore, "VDiskSnapshot", DefaultParameterSetName = PathSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(VDiskSnapshot))]
public sealed class RestoreVDiskSnapshotCommand : SnapshotCmdletBase
{
    /// <summary>Writes the snapshot that was restored.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Restores the one snapshot -Name or -Id picks in the image.</summary>
    protected override void ProcessImage(string fullPath)
    {
        if (Name is null && Id is null)
        {
            WriteError(VDiskErrors.InvalidArgument("Say which snapshot to restore with -Name or -Id.", fullPath));
            return;
        }
        if (Attempt(fullPath, () => RunCancellable(_ => SnapshotImage.List(fullPath))) is not { } snapshots) return;
        var picked = Pick(snapshots).ToList();
        ReportMissing(fullPath, snapshots, picked);
        if (picked.Count == 0) return;
        if (picked.Count > 1)
        {
            WriteError(VDiskErrors.AmbiguousSnapshot(fullPath, picked.Select(s => (s.Id, s.Name))));
            return;
        }
        var snapshot = picked[0];
        if (!ShouldProcess(fullPath, $"Revert to snapshot {snapshot.Id} ('{snapshot.Name}', {snapshot.Created.ToLocalTime():g}), discarding what changed since")) return;
        if (Attempt(fullPath, () => RunWithProgress("Restore-VDiskSnapshot", $"Reverting {fullPath} to '{snapshot.Name}'", 0,
                (_, _) => SnapshotImage.Apply(fullPath, snapshot.Id))) is { } restored && PassThru)
            WriteObject(VDiskSnapshot.From(restored));
    }
}
