# Remove-VDiskBackup: a self-contained set built through the engine ([VDisk.Engine.Backup.BackupImage]::Run with fixed
# times, qemu-io writes between points); the rules keep exactly restic's points, every kept point restores with plain
# qemu-img to the content it had, -WhatIf changes no file (by hash), output objects, error ids.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    function Get-Sha([string] $Path) {
        $raw = "$Path.sha.raw"
        Invoke-QemuImg @('convert', '-U', '-O', 'raw', $Path, $raw) | Out-Null
        try { (Get-FileHash -LiteralPath $raw -Algorithm SHA256).Hash } finally { Remove-Item -LiteralPath $raw }
    }

    # Six points: Mar 1, 2, 2 (evening), 3, 9 and 10 (UTC); returns the set folder and the content of each point by time.
    function New-BackupSet([string] $Folder) {
        $source = Join-Path $Folder 'vm.qcow2'
        Invoke-QemuImg @('create', '-q', '-f', 'qcow2', $source, '4M') | Out-Null
        $set = Join-Path $Folder 'set'
        $times = '2026-03-01T03:00:00Z', '2026-03-02T03:00:00Z', '2026-03-02T21:00:00Z', '2026-03-03T03:00:00Z', '2026-03-09T03:00:00Z', '2026-03-10T03:00:00Z' |
            ForEach-Object { [DateTimeOffset]::Parse($_, [Globalization.CultureInfo]::InvariantCulture) }
        $expected = @{}
        $i = 0
        foreach ($time in $times) {
            $i++
            Invoke-QemuIo $source @("write -P $(16 + $i) $($i * 256)k 128k", "write -P $(32 + $i) 3M 64k")
            $expected[$time.UtcDateTime] = Get-Sha $source
            $options = [VDisk.Engine.Backup.BackupOptions]@{ Time = $time; ThrottleLimit = 1 }
            $null = [VDisk.Engine.Backup.BackupImage]::Run($source, $set, $options, $null, [Threading.CancellationToken]::None)
        }
        [pscustomobject]@{ Set = $set; Times = $times; Expected = $expected }
    }

    function Get-SetHashes([string] $Set) {
        Get-ChildItem -LiteralPath $Set -File | Where-Object Name -ne '.vdisk-backup.lock' |
            ForEach-Object { "$($_.Name)=$((Get-FileHash -LiteralPath $_.FullName -Algorithm SHA256).Hash)" } | Sort-Object
    }

    function Get-Points([string] $Set) {
        (Get-Content -Raw -LiteralPath (Join-Path $Set 'vdisk-backup.json') | ConvertFrom-Json).points
    }
}

Describe 'Remove-VDiskBackup' -Skip:$SkipQemu {
    BeforeEach {
        $built = New-BackupSet (New-TestFolder)
    }

    It 'keeps exactly the points restic''s rules keep, each still reading its content with plain qemu-img' {
        # Days with points, newest first: Mar 10, 9, 3, 2 (21:00 is that day's newest); keep-daily 3 keeps 10, 9, 3;
        # keep-last 1 adds nothing; the rest go.
        $removed = Remove-VDiskBackup -Path $built.Set -KeepDaily 3 -KeepLast 1 -TimeZone UTC -Confirm:$false

        $removed | Should -HaveCount 3
        $removed[0] | Should -BeOfType VDisk.PowerShell.VDiskBackupPrune
        ($removed | ForEach-Object { $_.Time.ToUniversalTime() }) | Should -Be @($built.Times[0..2] | ForEach-Object UtcDateTime)
        ($removed | ForEach-Object Action) | Should -Be @('Merged', 'Merged', 'Merged')
        $removed[0].MergedInto.ToUniversalTime() | Should -Be $built.Times[3].UtcDateTime
        $removed[0].Reason | Should -Be 'policy'
        $removed[0].Kind | Should -Be 'Full'

        $points = Get-Points $built.Set
        $points | Should -HaveCount 3
        $points[0].kind | Should -Be 'Full'
        foreach ($point in $points) {
            $image = Join-Path $built.Set $point.file
            Get-Sha $image | Should -Be $built.Expected[$point.time.ToUniversalTime()]
            Invoke-QemuImg @('check', $image) | Out-Null
        }
    }

    It '-WhatIf lists what would go and changes no file' {
        $before = Get-SetHashes $built.Set
        $output = Remove-VDiskBackup $built.Set -KeepLast 2 -WhatIf
        $output | Should -BeNullOrEmpty # "What if:" lines go to the host, one per point that would go
        Get-SetHashes $built.Set | Should -Be $before
    }

    It '-PassThru writes every point with its action; -Time removes one point by time' {
        $all = Remove-VDiskBackup $built.Set -Time $built.Times[4].UtcDateTime -PassThru -Confirm:$false
        $all | Should -HaveCount 6
        ($all | ForEach-Object Action) | Should -Be @('Kept', 'Kept', 'Kept', 'Kept', 'Merged', 'Rewritten')
        $all[4].Reason | Should -Be 'requested'
        $last = Get-Points $built.Set | Select-Object -Last 1
        Get-Sha (Join-Path $built.Set $last.file) | Should -Be $built.Expected[$built.Times[5].UtcDateTime]
    }

    It 'needs a rule (RetentionRuleRequired) and a set (FileNotFound), and never removes the newest point' {
        { Remove-VDiskBackup $built.Set -Confirm:$false } | Should -Throw -ErrorId 'RetentionRuleRequired,VDisk.PowerShell.Commands.RemoveVDiskBackupCommand'
        Remove-VDiskBackup (Join-Path $TestDrive 'none') -KeepLast 1 -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -BeLike 'FileNotFound*'
        Remove-VDiskBackup $built.Set -Time $built.Times[5].UtcDateTime -Confirm:$false -ErrorVariable err2 -ErrorAction SilentlyContinue
        $err2[0].FullyQualifiedErrorId | Should -BeLike 'InvalidArgument*'
        { Remove-VDiskBackup $built.Set -KeepLast 1 -TimeZone 'Not/AZone' -Confirm:$false } |
            Should -Throw -ErrorId 'UnknownTimeZone,VDisk.PowerShell.Commands.RemoveVDiskBackupCommand'
        (Get-Points $built.Set) | Should -HaveCount 6
    }
}
