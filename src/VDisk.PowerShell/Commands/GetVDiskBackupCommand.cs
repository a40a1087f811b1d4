// Get-VDiskBackup: the restore points of backup sets, oldest first (restic snapshots, Proxmox's backup list).
using System.Management.Automation;
using VDisk.Engine.Backup;

namespace VDisk.PowerShell.Commands;

/// <summary>Gets the restore points of backup sets.</summary>
[Cmdlet(VerbsCommon.Get, "VDiskBackup", DefaultParameterSetName = PathSet)]
[OutputType(typeof(VDiskBackupPoint))]
public sealed class GetVDiskBackupCommand : BackupSetCmdletBase
{
    /// <summary>Writes the set's points (only the named one when a point's image was given).</summary>
    protected override void ProcessSet(string setFolder, string? pointImage)
    {
        var points = Attempt(setFolder, () => RunCancellable(cancel =>
        {
            using var set = BackupSet.OpenForReading(setFolder, Wait, cancel);
            return set.Points.ToList();
        }));
        if (points is null) return;
        foreach (var point in points)
            if (pointImage is null || System.IO.Path.Combine(setFolder, point.File) == pointImage)
                WriteObject(VDiskBackupPoint.From(setFolder, point));
    }
}
