# Backup-VDisk, Get-VDiskBackup, Restore-VDiskBackup and Test-VDiskBackup: a set over several runs with qemu-io
# writes between them, every point restored (through VDisk and through plain qemu-img) to the content the source
# had then, destinations, -WhatIf, error ids, damage found, and interruption (Ctrl+C and kill -9 at sampled moments)
# leaving every earlier point restorable.

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
}

Describe 'A backup set over several runs' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $image = "$folder/vm.qcow2"
        $null = New-VDisk -Path $image -SizeBytes 32MB
        $shas = @()
        $made = @()
        foreach ($round in 0..2) {
            Invoke-QemuIo $image @("write -P 0x$((17 * ($round + 1)).ToString('x2')) $($round * 3)M 1M", "write -z $($round * 5 + 1)M 64k")
            $shas += Get-Sha $image
            $made += Backup-VDisk $image -Destination "$folder/backups/vm" -CompressionType Zstd
            Start-Sleep -Milliseconds 1100 # point names carry the second
        }
        $listed = Get-VDiskBackup "$folder/backups/vm"
    }

    It 'writes a full point first and then incremental ones' {
        $made | ForEach-Object { $_ | Should -BeOfType VDisk.PowerShell.VDiskBackupPoint }
        $made.Kind | Should -Be @('Full', 'Incremental', 'Incremental')
        $made.ChangeDetection | Should -Be @('Full', 'Bitmap', 'Bitmap') # a qcow2 source carries the set's dirty bitmap
        $made[1].BytesRead | Should -BeLessOrEqual (1MB + 64KB)
        (Get-VDisk $image).Bitmaps.Name | Should -Be @($made[2].Bitmap)
        $made[1].ChangedBytes | Should -BeLessOrEqual (1MB + 64KB)
        $made[0].SetPath | Should -Be "$folder/backups/vm"
        $made[0].SourcePath | Should -Be $image
        $made[0].Compression | Should -Be 'Zstd'
    }

    It 'lists the points oldest first, as they were written' {
        $listed.Path | Should -Be $made.Path
        $listed.Time | Should -Be $made.Time
        $listed.Time[0].Kind | Should -Be 'Local'
    }

    It 'restores every point, piped from Get-VDiskBackup, to the content the source had then' {
        foreach ($i in 0..2) {
            $restored = "$folder/restored$i.raw"
            $listed[$i] | Restore-VDiskBackup -DestinationPath $restored
            (Get-FileHash -LiteralPath $restored -Algorithm SHA256).Hash | Should -Be $shas[$i]
        }
    }

    It 'keeps every point readable by plain qemu-img through its chain' {
        foreach ($i in 0..2) {
            Get-Sha $listed[$i].Path | Should -Be $shas[$i]
            (Get-QemuCheck $listed[$i].Path).corruptions | Should -BeNullOrEmpty
        }
        (Get-QemuInfo $listed[2].Path).'backing-filename' | Should -Be (Split-Path -Leaf $listed[1].Path)
    }

    It 'restores the newest point at or before -Time, in the format the extension names' {
        $info = Restore-VDiskBackup "$folder/backups/vm" -Time $listed[1].Time.AddMilliseconds(500) -DestinationPath "$folder/at1.vmdk" -PassThru
        $info.Format | Should -Be 'Vmdk'
        Get-Sha "$folder/at1.vmdk" | Should -Be $shas[1]
    }

    It 'makes an instant overlay on the point, which Merge-VDiskChain -Pull makes standalone' {
        $pointBytes = Get-FileHash -LiteralPath $listed[2].Path
        Restore-VDiskBackup "$folder/backups/vm" -Instant -DestinationPath "$folder/now.qcow2"
        (Get-QemuInfo "$folder/now.qcow2").'backing-filename' | Should -Be $listed[2].Path
        Get-Sha "$folder/now.qcow2" | Should -Be $shas[2]
        Invoke-QemuIo "$folder/now.qcow2" @('write -P 0x7e 0 64k') # the VM writes into the overlay, never the point
        Merge-VDiskChain "$folder/now.qcow2" -Pull -Confirm:$false
        (Get-QemuInfo "$folder/now.qcow2").'backing-filename' | Should -BeNullOrEmpty
        (Get-FileHash -LiteralPath $listed[2].Path).Hash | Should -Be $pointBytes.Hash
        (Test-VDiskBackup "$folder/backups/vm").Intact | Should -Not -Contain $false
    }

    It 'finds every point intact and records when' {
        $checks = Test-VDiskBackup "$folder/backups/vm"
        $checks.Intact | Should -Be @($true, $true, $true)
        $checks.BlocksChecked[0] | Should -BeGreaterThan 0
        (Get-VDiskBackup "$folder/backups/vm").Verified | ForEach-Object { $_ | Should -BeGreaterThan (Get-Date).AddMinutes(-5) }
    }

    It 'lists every set of a folder of sets' {
        (Get-VDiskBackup "$folder/backups").Path | Should -Be $made.Path
    }
}

Describe 'Destinations and -WhatIf' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        foreach ($name in 'a', 'b') {
            $null = New-VDisk -Path "$folder/$name.qcow2" -SizeBytes 4MB
            Invoke-QemuIo "$folder/$name.qcow2" @('write -P 0x33 0 1M')
        }
    }

    It 'keeps one set per image in an existing folder that is not a set' {
        $null = New-Item -ItemType Directory "$folder/all"
        $points = Get-ChildItem "$folder/*.qcow2" | Backup-VDisk -Destination "$folder/all"
        $points.SetPath | Should -Be @("$folder/all/a", "$folder/all/b")
    }

    It 'computes the destination per piped image from a script block' {
        $points = Get-ChildItem "$folder/*.qcow2" | Backup-VDisk -Destination { "$folder/per/$($_.BaseName)-set" }
        $points.SetPath | Should -Be @("$folder/per/a-set", "$folder/per/b-set")
    }

    It 'writes nothing with -WhatIf' {
        Backup-VDisk "$folder/a.qcow2" -Destination "$folder/whatif" -WhatIf
        "$folder/whatif" | Should -Not -Exist
        Restore-VDiskBackup "$folder/all/a" -DestinationPath "$folder/r.qcow2" -WhatIf
        "$folder/r.qcow2" | Should -Not -Exist
    }
}

Describe 'Errors' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $image = "$folder/vm.qcow2"
        $null = New-VDisk -Path $image -SizeBytes 4MB
        Invoke-QemuIo $image @('write -P 0x44 0 2M')
        $point = Backup-VDisk $image -Destination "$folder/set" -NoCompression
    }

    It 'refuses an image a VM is writing, says how to back it up, and reads it with -Force' {
        $holder = Start-QemuHolder $image 'qcow2'
        try {
            Backup-VDisk $image -Destination "$folder/set" -ErrorVariable failure -ErrorAction SilentlyContinue
            $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageInUse' 'Backup-VDisk')
            $failure[0].Exception.Message | Should -Match 'Backup-VDisk -Domain'
            (Backup-VDisk $image -Destination "$folder/set" -Force).Kind | Should -Be 'Incremental'
        } finally {
            Stop-QemuHolder $holder
        }
    }

    It 'fails clearly while another command writes the set' {
        $held = [VDisk.Engine.Backup.BackupSet]::OpenForWriting("$folder/set", $false, [System.Threading.CancellationToken]::None)
        try {
            Backup-VDisk $image -Destination "$folder/set" -ErrorVariable failure -ErrorAction SilentlyContinue
            $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageInUse' 'Backup-VDisk')
            $failure[0].Exception.Message | Should -Match '-Wait'
        } finally {
            $held.Dispose()
        }
    }

    It 'says BackupPointNotFound for a time before the first point' {
        Restore-VDiskBackup "$folder/set" -Time $point.Time.AddDays(-1) -DestinationPath "$folder/old.qcow2" -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BackupPointNotFound' 'Restore-VDiskBackup')
        "$folder/old.qcow2" | Should -Not -Exist
    }

    It 'never replaces an image a VM has open, even with -Force' {
        $null = New-VDisk -Path "$folder/running.qcow2" -SizeBytes 4MB
        $holder = Start-QemuHolder "$folder/running.qcow2" 'qcow2'
        try {
            $before = (Get-FileHash "$folder/running.qcow2").Hash
            Restore-VDiskBackup "$folder/set" -DestinationPath "$folder/running.qcow2" -Force -ErrorVariable failure -ErrorAction SilentlyContinue
            $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageInUse' 'Restore-VDiskBackup')
            (Get-FileHash "$folder/running.qcow2").Hash | Should -Be $before
        } finally {
            Stop-QemuHolder $holder
        }
    }

    It 'replaces an existing destination only with -Force' {
        Set-Content "$folder/exists.qcow2" 'keep me'
        Restore-VDiskBackup "$folder/set" -DestinationPath "$folder/exists.qcow2" -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileExists' 'Restore-VDiskBackup')
        Get-Content "$folder/exists.qcow2" | Should -Be 'keep me'
        Restore-VDiskBackup "$folder/set" -DestinationPath "$folder/exists.qcow2" -Force
        Get-Sha "$folder/exists.qcow2" | Should -Be (Get-Sha $image)
    }

    It 'says FileNotFound for a folder that is not a set' {
        Get-VDiskBackup (New-TestFolder) -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Get-VDiskBackup')
    }

    It 'reports a damaged point as BackupDamaged with its guest offset' {
        $bytes = [System.IO.File]::ReadAllBytes($point.Path)
        $at = [System.Text.Encoding]::Latin1.GetString($bytes).IndexOf([string]::new([char]0x44, 64KB), [System.StringComparison]::Ordinal)
        $at | Should -BeGreaterThan 0
        $bytes[$at + 100] = 0x45 # in the first block of guest data
        [System.IO.File]::WriteAllBytes($point.Path, $bytes)
        $checks = Test-VDiskBackup "$folder/set" -ErrorVariable failure -ErrorAction SilentlyContinue
        $checks[0].Intact | Should -BeFalse
        $checks[0].DamagedOffsets | Should -Be @(0)
        $checks[0].Problems | Should -Match 'guest offset 0 '
        $checks[1].Intact | Should -BeTrue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BackupDamaged' 'Test-VDiskBackup')
        Restore-VDiskBackup "$folder/set" -Time $point.Time -DestinationPath "$folder/bad.qcow2" -ErrorAction SilentlyContinue
        "$folder/bad.qcow2" | Should -Not -Exist
    }
}

Describe 'Interrupted backups' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $image = "$folder/vm.raw"
        # Random (incompressible) data, so a backup takes long enough to be interrupted at several moments.
        $random = [byte[]]::new(96MB)
        [System.Random]::new(7).NextBytes($random)
        [System.IO.File]::WriteAllBytes($image, $random)
        $set = "$folder/set"
        $first = Backup-VDisk $image -Destination $set -CompressionType Zstd
        $firstSha = Get-Sha $first.Path
        Set-FilePattern $image 0 1MB 0x5a
        $secondSha = Get-Sha $image
        Start-Sleep -Milliseconds 1100
        $second = Backup-VDisk $image -Destination $set -Full
        Set-FilePattern $image 8MB 1MB 0x6b
        $files = (Get-ChildItem -LiteralPath $set).Name | Sort-Object
    }

    It 'leaves no point and no file after Ctrl+C' {
        $ps = New-ModuleRunspace
        $null = $ps.AddCommand('Backup-VDisk').AddParameter('Path', $image).AddParameter('Destination', $set).AddParameter('Full').AddParameter('ThrottleLimit', 1)
        Stop-AfterProgress $ps 'Backup-VDisk' | Out-Null
        $ps.Dispose()
        (Get-ChildItem -LiteralPath $set -Force | Where-Object Name -NE '.vdisk-backup.lock').Name | Sort-Object | Should -Be $files
        (Get-VDiskBackup $set).Path | Should -Be @($first.Path, $second.Path)
    }

    It 'keeps every earlier point restorable when killed at <_> ms' -ForEach @(150, 400, 800, 1500) {
        $before = @(Get-VDiskBackup $set).Count
        $child = Start-Process -PassThru -FilePath ([System.Environment]::ProcessPath) -ArgumentList @(
            (Join-Path $PSHOME 'pwsh.dll'), '-NoProfile', '-NonInteractive', '-Command',
            "Import-Module '$((Get-Module VDisk).Path)'; Backup-VDisk '$image' -Destination '$set' -Full -ThrottleLimit 1 | Out-Null")
        Start-Sleep -Milliseconds $_
        if (-not $child.HasExited) { $child.Kill() }
        $child.WaitForExit()
        $points = Get-VDiskBackup $set
        $points.Count | Should -BeIn @($before, ($before + 1)) # killed before or after the manifest was replaced
        Restore-VDiskBackup $set -Time $first.Time -DestinationPath "$folder/r1.raw" -Force
        (Get-FileHash "$folder/r1.raw" -Algorithm SHA256).Hash | Should -Be $firstSha
        Restore-VDiskBackup $set -Time $second.Time -DestinationPath "$folder/r2.raw" -Force
        (Get-FileHash "$folder/r2.raw" -Algorithm SHA256).Hash | Should -Be $secondSha
        (Test-VDiskBackup $set).Intact | Should -Not -Contain $false
    }

    It 'removes what a killed run left, on the next backup' {
        $point = Backup-VDisk $image -Destination $set -WarningVariable warned
        $point.Kind | Should -Be 'Incremental'
        (Get-ChildItem -LiteralPath $set -Force | Where-Object Name -Like '*.tmp') | Should -BeNullOrEmpty
    }
}

Describe 'The nightly backup example script' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $images = "$folder/images"
        $null = New-Item -ItemType Directory $images
        foreach ($name in 'web', 'db') {
            $null = New-VDisk -Path "$images/$name.qcow2" -SizeBytes 8MB
            Invoke-QemuIo "$images/$name.qcow2" @('write -P 0x21 0 2M')
        }
        $script = Join-Path $PSScriptRoot '../../docs/examples/Invoke-NightlyBackup.ps1'
        $modules = Split-Path (Split-Path (Get-Module VDisk).Path)

        function Invoke-Nightly {
            $env:PSModulePath = "$modules$([System.IO.Path]::PathSeparator)$env:PSModulePath"
            $output = & ([System.Environment]::ProcessPath) (Join-Path $PSHOME 'pwsh.dll') -NoProfile -NonInteractive -File $script `
                -ImageFolder $images -BackupRoot "$folder/backups" -SummaryPath "$folder/summary.json" -Verify 2>&1
            [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = $output -join "`n"; Summary = Get-Content "$folder/summary.json" -Raw | ConvertFrom-Json }
        }
    }

    It 'backs up every image, and only what changed on the second night' {
        $first = Invoke-Nightly
        $first.ExitCode | Should -Be 0 -Because $first.Output
        $first.Summary.Succeeded | Should -Be 2
        $first.Summary.Results.Kind | Should -Be @('Full', 'Full')
        Start-Sleep -Milliseconds 1100
        Invoke-QemuIo "$images/web.qcow2" @('write -P 0x22 4M 64k')
        $second = Invoke-Nightly
        $second.ExitCode | Should -Be 0 -Because $second.Output
        ($second.Summary.Results | Sort-Object Image).Kind | Should -Be @('Incremental', 'Incremental')
        ($second.Summary.Results | Where-Object Image -Like '*web.qcow2').ChangedBytes | Should -Be 64KB
        ($second.Summary.Results | Where-Object Image -Like '*db.qcow2').ChangedBytes | Should -Be 0
        (Get-VDiskBackup "$folder/backups/web" | Select-Object -Last 1) | Restore-VDiskBackup -DestinationPath "$folder/web.raw"
        qemu-img compare -q "$folder/web.raw" "$images/web.qcow2"
        $LASTEXITCODE | Should -Be 0
        Get-Content "$folder/backups/nightly-backup.log" -Raw | Should -Match 'web.qcow2: Incremental point, 65,536 bytes changed'
    }

    It 'goes on past an image that fails, logs it and exits 1' {
        $holder = Start-QemuHolder "$images/db.qcow2" 'qcow2'
        try {
            Start-Sleep -Milliseconds 1100
            $run = Invoke-Nightly
        } finally {
            Stop-QemuHolder $holder
        }
        $run.ExitCode | Should -Be 1
        $run.Summary.Failed | Should -Be 1
        ($run.Summary.Results | Where-Object Image -Like '*web.qcow2').Succeeded | Should -BeTrue
        ($run.Summary.Results | Where-Object Image -Like '*db.qcow2').Error | Should -Match 'in use|lock'
        Get-Content "$folder/backups/nightly-backup.log" -Raw | Should -Match 'ERROR db.qcow2'
    }
}
