<#
.SYNOPSIS
Backs up every disk image in a folder into one backup set each: the job a 3 a.m. scheduler runs.

.DESCRIPTION
For each image in -ImageFolder, Backup-VDisk writes a point into the set BACKUPROOT/NAME: a full backup when the
set is new or its newest full backup is older than -FullEveryDays, else an incremental one. One image failing
(a VM holding it, a damaged set) does not stop the others. Every step is appended to a log file; a summary object
is written to the pipeline (and as JSON to -SummaryPath when given). With -Retention, old points are pruned with
Remove-VDiskBackup; with -Verify, every set is checked with Test-VDiskBackup. The exit code is 0 when every image
was backed up (and verified), 1 otherwise, so the scheduler (cron, a systemd timer, Task Scheduler) can alert.

.EXAMPLE
pwsh -NoProfile -File Invoke-NightlyBackup.ps1 -ImageFolder /var/lib/libvirt/images -BackupRoot /backups -Retention @{ KeepDaily = 14; KeepWeekly = 8 }

A crontab line: 0 3 * * * pwsh -NoProfile -File /opt/vdisk/Invoke-NightlyBackup.ps1 -ImageFolder /var/lib/libvirt/images -BackupRoot /backups
#>
[CmdletBinding()]
param(
    # The folder whose images are backed up (not recursive).
    [Parameter(Mandatory)] [string] $ImageFolder,
    # The folder holding one backup set per image.
    [Parameter(Mandatory)] [string] $BackupRoot,
    # Which files are images.
    [string[]] $Include = @('*.qcow2', '*.raw', '*.img', '*.vmdk', '*.vdi'),
    # A new full backup (a new chain) when the newest one is older than this.
    [int] $FullEveryDays = 7,
    # Remove-VDiskBackup parameters, e.g. @{ KeepDaily = 14; KeepWeekly = 8; KeepMonthly = 12 }.
    [hashtable] $Retention,
    # Check every set after backing up.
    [switch] $Verify,
    # The log file (appended to).
    [string] $LogPath = (Join-Path $BackupRoot 'nightly-backup.log'),
    # Also write the summary as JSON here, for monitoring.
    [string] $SummaryPath
)

$ErrorActionPreference = 'Stop'
Import-Module VDisk

function Write-Log([string] $Message) {
    $line = '{0:yyyy-MM-dd HH:mm:ss} {1}' -f (Get-Date), $Message
    Add-Content -LiteralPath $LogPath -Value $line
    Write-Verbose $line
}

$null = New-Item -ItemType Directory -Force -Path $BackupRoot
$started = Get-Date
$results = [System.Collections.Generic.List[object]]::new()
Write-Log "Nightly backup of $ImageFolder into $BackupRoot started."

foreach ($image in Get-ChildItem -LiteralPath $ImageFolder -File | Where-Object { $name = $_.Name; $Include.Where({ $name -like $_ }) }) {
    $set = Join-Path $BackupRoot $image.BaseName
    try {
        $lastFull = if (Test-Path -LiteralPath (Join-Path $set 'vdisk-backup.json')) {
            Get-VDiskBackup -LiteralPath $set -Wait | Where-Object Kind -EQ 'Full' | Select-Object -Last 1
        }
        $full = -not $lastFull -or $lastFull.Time -lt $started.AddDays(-$FullEveryDays)
        $point = Backup-VDisk -LiteralPath $image.FullName -Destination $set -Full:$full -Wait -WarningVariable warnings
        foreach ($warning in $warnings) { Write-Log "WARNING $($image.Name): $warning" }
        if ($Retention) {
            $removed = @(Remove-VDiskBackup -LiteralPath $set -Wait -Confirm:$false -PassThru @Retention)
            if ($removed.Count) { Write-Log "$($image.Name): pruned $($removed.Count) point(s)." }
        }
        if ($Verify) {
            $damaged = @(Test-VDiskBackup -LiteralPath $set -Wait -ErrorAction SilentlyContinue | Where-Object { -not $_.Intact })
            if ($damaged.Count) { throw "the set $set has $($damaged.Count) damaged point(s): $($damaged.Problems -join '; ')" }
        }
        Write-Log ("{0}: {1} point, {2:N0} bytes changed, {3:N0} bytes stored, {4} detection." -f $image.Name, $point.Kind, $point.ChangedBytes, $point.StoredBytes, $point.ChangeDetection)
        $results.Add([pscustomobject]@{ Image = $image.FullName; Set = $set; Succeeded = $true; Kind = "$($point.Kind)"; ChangedBytes = $point.ChangedBytes; StoredBytes = $point.StoredBytes; Error = $null })
    } catch {
        Write-Log "ERROR $($image.Name): $($_.Exception.Message)"
        $results.Add([pscustomobject]@{ Image = $image.FullName; Set = $set; Succeeded = $false; Kind = $null; ChangedBytes = 0; StoredBytes = 0; Error = $_.Exception.Message })
    }
}

$failed = @($results | Where-Object { -not $_.Succeeded })
$summary = [pscustomobject]@{
    Started      = $started
    Finished     = Get-Date
    Images       = $results.Count
    Succeeded    = $results.Count - $failed.Count
    Failed       = $failed.Count
    ChangedBytes = ($results | Measure-Object ChangedBytes -Sum).Sum
    StoredBytes  = ($results | Measure-Object StoredBytes -Sum).Sum
    Results      = $results.ToArray()
}
Write-Log "Nightly backup finished: $($summary.Succeeded) of $($summary.Images) image(s) backed up, $($summary.Failed) failed."
if ($SummaryPath) { $summary | ConvertTo-Json -Depth 4 | Set-Content -LiteralPath $SummaryPath }
$summary
exit ([int]($failed.Count -gt 0 -or $results.Count -eq 0))
