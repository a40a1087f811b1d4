// Test-VDiskBackup: re-reads every file of backup sets and checks every stored hash (restic check --read-data).
// One object per point; a damaged point is also a non-terminating BackupDamaged error, so scripts can stop on it.
using System.Management.Automation;
using VDisk.Engine.Backup;

namespace VDisk.PowerShell.Commands;

/// <summary>Verifies backup sets.</summary>
[Cmdlet(VerbsDiagnostic.Test, "VDiskBackup", DefaultParameterSetName = PathSet)]
[OutputType(typeof(VDiskBackupCheck))]
public sealed class TestVDiskBackupCommand : EncryptedBackupSetCmdletBase
{
    /// <summary>Error id of a damaged point or manifest.</summary>
    public const string DamagedId = "BackupDamaged";

    /// <summary>Checks every point of the set.</summary>
    protected override void ProcessSet(string setFolder, string? pointImage)
    {
        var checks = Attempt(setFolder, () => RunWithProgress("Test-VDiskBackup", $"Checking {setFolder}", 0,
            (meter, cancel) => VerifyBackup.Run(setFolder, Wait, meter, cancel)));
        if (checks is null) return;
        foreach (var check in checks.Select(c => VDiskBackupCheck.From(setFolder, c)))
        {
            WriteObject(check);
            if (!check.Intact)
                WriteError(new ErrorRecord(new InvalidDataException(string.Join(Environment.NewLine, check.Problems)), DamagedId, ErrorCategory.InvalidData, check.Path));
        }
    }
}
