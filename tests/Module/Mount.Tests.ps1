# Mount-VDisk / Dismount-VDisk (issue 12, Linux): an ext4 made by mkfs.ext4 -d from a folder of files, inside a GPT
# partition (a FAT partition beside it mounted by the kernel's loop mount, or skipped with the reason), converted to qcow2: every file reads back with the same
# sha256 through nbdfuse and fuse2fs; Dismount-VDisk leaves no mount, folder or process behind and the image is
# unchanged. The same through an incremental backup point; a missing tool (PATH without it) is ToolMissing naming the
# Debian package; a mount left by a killed session (kill -9) is cleaned by the next Mount-VDisk on that path.
# Every process a test starts is stopped by pid in AfterEach/AfterAll/finally.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
    $SkipMount = $env:CI -ne 'true' -and (
        $IsWindows -or $IsMacOS -or -not (Test-Path /dev/fuse) -or
        @(Get-Command nbdfuse, fuse2fs, fusermount3, sfdisk, mkfs.ext4, mkfs.vfat -CommandType Application -ErrorAction Ignore).Count -lt 6)
    if ($SkipMount) { Write-Warning 'nbdfuse/fuse2fs/fusermount3/sfdisk/mkfs.ext4/mkfs.vfat or /dev/fuse missing: SKIPPING Mount-VDisk tests (install libnbd-bin fuse3 fuse2fs fdisk e2fsprogs dosfstools; in CI they fail instead).' }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    . (Join-Path $PSScriptRoot 'MountSupport.ps1')
}

Describe 'Mount-VDisk' -Skip:($SkipQemu -or $SkipMount) {
    BeforeAll {
        $folder = New-TestFolder
        $files1 = New-FileSet "$folder/files1" 1
        $raw = "$folder/disk.raw"
        New-PartitionedDisk $raw "$folder/files1"
        $qcow2 = "$folder/disk.qcow2"
        Invoke-QemuImg @('convert', '-q', '-f', 'raw', '-O', 'qcow2', $raw, $qcow2) | Out-Null
        $script:recorded = [System.Collections.Generic.List[int]]::new()
    }

    AfterEach {
        Stop-Leftovers $recorded
    }

    It 'mounts the ext4 partition read-only with every file intact, the FAT one as the kernel allows; Dismount-VDisk removes it all' {
        $before = (Get-FileHash $qcow2).Hash
        $mountPath = "$folder/m1"
        $m = Mount-VDisk $qcow2 -MountPath $mountPath -WarningVariable warnings -WarningAction SilentlyContinue
        $m.Pids | ForEach-Object { $recorded.Add($_) }
        $m | Should -BeOfType VDisk.PowerShell.VDiskMount
        $m.Path | Should -Be $qcow2
        $m.MountPath | Should -Be $mountPath
        $m.Mounted | Should -BeTrue
        $m.Pids.Count | Should -Be 2
        $m.Pids | ForEach-Object { Test-PidRunning $_ | Should -BeTrue }
        # Each tool runs in a session of its own (setsid), out of reach of the terminal's Ctrl+C.
        $m.Pids | ForEach-Object { Get-SessionId $_ | Should -Not -Be (Get-SessionId $PID) }
        $m.Partitions.Count | Should -Be 2
        $m.Partitions[0].Number | Should -Be 1
        $m.Partitions[0].FileSystem | Should -Be 'ext4'
        $m.Partitions[0].MountedAt | Should -Be "$mountPath/p1"
        $m.Partitions[0].SkippedReason | Should -BeNullOrEmpty
        $m.Partitions[1].FileSystem | Should -Match '^fat'
        # FAT goes through the kernel's loop mount: mounted where this process may use it and the kernel has vfat,
        # otherwise skipped with the exact reason (here: root, but a kernel without vfat).
        if ($expectedFat = Get-ExpectedLoopSkip 'vfat') {
            $m.Partitions[1].MountedAt | Should -BeNullOrEmpty
            $m.Partitions[1].SkippedReason | Should -Match ([regex]::Escape($expectedFat))
            $m.Partitions[1].SkippedReason | Should -Match 'ext2, ext3 and ext4'
            ($warnings -join "`n") | Should -Match 'partition 2 not mounted'
        } else {
            $m.Partitions[1].MountedAt | Should -Be "$mountPath/p2"
            Test-MountPoint "$mountPath/p2" | Should -BeTrue
        }
        Test-MountPoint "$mountPath/p1" | Should -BeTrue

        $seen = Get-TreeHashes "$mountPath/p1"
        $seen.Count | Should -Be $files1.Count
        foreach ($name in $files1.Keys) { $seen[$name] | Should -Be $files1[$name] -Because $name }
        { Set-Content "$mountPath/p1/new.txt" 'x' -ErrorAction Stop } | Should -Throw
        ($m | Format-Table | Out-String) | Should -Match 'p1 ext4'

        $m | Dismount-VDisk
        $m.Mounted | Should -BeFalse
        Test-MountPoint "$mountPath/p1" | Should -BeFalse
        "$mountPath/p1" | Should -Not -Exist
        $mountPath | Should -Not -Exist
        $m.Pids | ForEach-Object { Test-PidRunning $_ | Should -BeFalse }
        @(Get-ChildItem ([System.IO.Path]::GetTempPath()) -Filter "vdisk-mount-$PID-*" -Directory).Count | Should -Be 0
        (Get-FileHash $qcow2).Hash | Should -Be $before
    }

    It 'mounts a backup point through its chain, also from Get-VDiskBackup on the pipeline' {
        $set = "$folder/set"
        $backupRaw = "$folder/backup-source.raw"
        Copy-Item $raw $backupRaw
        $first = Backup-VDisk $backupRaw -Destination $set
        $null = New-FileSet "$folder/files2" 2
        Copy-Item "$folder/files1/*" "$folder/files2" -Recurse -Force
        $files2 = Get-TreeHashes "$folder/files2"
        Set-Ext4 $backupRaw "$folder/files2"
        $second = Backup-VDisk $backupRaw -Destination $set
        $second.Kind | Should -Be 'Incremental'

        $points = @(Get-VDiskBackup $set)
        $m = $points[0] | Mount-VDisk -MountPath "$folder/b1" -WarningAction SilentlyContinue
        $m.Pids | ForEach-Object { $recorded.Add($_) }
        $m.Path | Should -Be $first.Path
        $seen = Get-TreeHashes "$folder/b1/p1"
        $seen.Count | Should -Be $files1.Count
        foreach ($name in $files1.Keys) { $seen[$name] | Should -Be $files1[$name] -Because $name }

        $m2 = $points[-1] | Mount-VDisk -MountPath "$folder/b2" -WarningAction SilentlyContinue
        $m2.Pids | ForEach-Object { $recorded.Add($_) }
        $seen = Get-TreeHashes "$folder/b2/p1"
        $seen.Count | Should -Be $files2.Count
        foreach ($name in $files2.Keys) { $seen[$name] | Should -Be $files2[$name] -Because $name }

        Dismount-VDisk -MountPath "$folder/b1"
        $m.Mounted | Should -BeFalse
        Dismount-VDisk -All
        $m2.Mounted | Should -BeFalse
        ($m.Pids + $m2.Pids) | ForEach-Object { Test-PidRunning $_ | Should -BeFalse }
        "$folder/b1" | Should -Not -Exist
        "$folder/b2" | Should -Not -Exist
    }

    It 'mounts a whole-disk ext4 (no partition table) as p0, from a vmdk' {
        $whole = "$folder/whole.raw"
        & mkfs.ext4 -q -d "$folder/files1" $whole 64M
        $vmdk = "$folder/whole.vmdk"
        Invoke-QemuImg @('convert', '-q', '-f', 'raw', '-O', 'vmdk', $whole, $vmdk) | Out-Null
        $m = Mount-VDisk -LiteralPath $vmdk -MountPath "$folder/w" -Format Vmdk
        $m.Pids | ForEach-Object { $recorded.Add($_) }
        $m.Partitions.Count | Should -Be 1
        $m.Partitions[0].Number | Should -Be 0
        $m.Partitions[0].MountedAt | Should -Be "$folder/w/p0"
        $seen = Get-TreeHashes "$folder/w/p0"
        foreach ($name in $files1.Keys) { $seen[$name] | Should -Be $files1[$name] -Because $name }
        $m | Dismount-VDisk
        "$folder/w" | Should -Not -Exist
    }

    It 'mounts nothing, and stops what it started, when no file system it can mount is found' {
        $fat = "$folder/fat.raw"
        & truncate -s 32M $fat
        & mkfs.vfat $fat 2>&1 | Out-Null
        $m = Mount-VDisk $fat -MountPath "$folder/f" -WarningVariable warnings -WarningAction SilentlyContinue
        $m.Pids | ForEach-Object { $recorded.Add($_) }
        if ($expectedFat = Get-ExpectedLoopSkip 'vfat') {
            $m.Mounted | Should -BeFalse
            $m.Partitions[0].SkippedReason | Should -Match ([regex]::Escape($expectedFat))
            ($warnings -join "`n") | Should -Match 'nothing was mounted'
            $m.Pids | ForEach-Object { Test-PidRunning $_ | Should -BeFalse }
            @(Get-LoopDevicesOf $PID).Count | Should -Be 0 -Because 'a loop device set up for a failed mount is detached'
        } else {
            $m.Mounted | Should -BeTrue
            $m | Dismount-VDisk
        }
        "$folder/f" | Should -Not -Exist
    }

    It 'mounts the disk of a running VM (QEMU holds its lock) without disturbing it' {
        $holder = Start-QemuHolder $qcow2 'qcow2'
        try {
            $m = Mount-VDisk $qcow2 -MountPath "$folder/live" -WarningAction SilentlyContinue
            $m.Pids | ForEach-Object { $recorded.Add($_) }
            (Get-TreeHashes "$folder/live/p1").Count | Should -Be $files1.Count
            $m | Dismount-VDisk
            $holder.HasExited | Should -BeFalse
        } finally {
            Stop-QemuHolder $holder
        }
    }

    It 'changes nothing with -WhatIf' {
        Mount-VDisk $qcow2 -MountPath "$folder/whatif" -WhatIf | Should -BeNullOrEmpty
        "$folder/whatif" | Should -Not -Exist
    }

    It 'lists a damaged ext4 that fuse2fs refuses as skipped, with fuse2fs''s message, and mounts the rest' {
        $two = "$folder/two.raw"
        & truncate -s 160M $two
        "label: gpt`nstart=2048, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4`nstart=133120, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4`n" | & sfdisk -q $two
        Set-Ext4 $two "$folder/files1"
        & mkfs.ext4 -q -F -E "offset=$(133120 * 512)" $two 64M
        Set-FileBytes $two (133120 * 512 + 1024 + 24) ([byte[]](0x40, 0, 0, 0)) # s_log_block_size: the superblock checksum no longer matches
        $m = Mount-VDisk $two -MountPath "$folder/two" -WarningVariable warnings -WarningAction SilentlyContinue
        $m.Pids | ForEach-Object { $recorded.Add($_) }
        $m.Mounted | Should -BeTrue
        $m.Partitions[0].MountedAt | Should -Be "$folder/two/p1"
        $m.Partitions[1].MountedAt | Should -BeNullOrEmpty
        $m.Partitions[1].SkippedReason | Should -Match 'fuse2fs could not mount it: .*superblock'
        ($warnings -join "`n") | Should -Match 'partition 2 not mounted'
        (Get-TreeHashes "$folder/two/p1").Count | Should -Be $files1.Count
        $m | Dismount-VDisk
        "$folder/two" | Should -Not -Exist
        $m.Pids | ForEach-Object { Test-PidRunning $_ | Should -BeFalse }
    }

    It 'refuses a mount path that is mounted already (MountPathInUse)' {
        $m = Mount-VDisk $qcow2 -MountPath "$folder/busy" -WarningAction SilentlyContinue
        $m.Pids | ForEach-Object { $recorded.Add($_) }
        Mount-VDisk $qcow2 -MountPath "$folder/busy" -ErrorVariable failure -ErrorAction SilentlyContinue -WarningAction SilentlyContinue | Should -BeNullOrEmpty
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'MountPathInUse' 'Mount-VDisk')
        $m | Dismount-VDisk
    }

    It 'reports Dismount-VDisk -MountPath with nothing mounted as NotMounted' {
        Dismount-VDisk -MountPath "$folder/nothing" -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'NotMounted' 'Dismount-VDisk')
    }

    It 'reports a missing <Tool> as ToolMissing naming the Debian package <Package>' -ForEach @(
        @{ Tool = 'nbdfuse'; Package = 'libnbd-bin' }, @{ Tool = 'fuse2fs'; Package = 'fuse2fs' }, @{ Tool = 'fusermount3'; Package = 'fuse3' }
    ) {
        # A PATH of links to every tool but the one left out.
        $bin = New-TestFolder
        foreach ($t in 'nbdfuse', 'fuse2fs', 'fusermount3', 'setsid') {
            if ($t -ne $Tool) { $null = New-Item -ItemType SymbolicLink -Path "$bin/$t" -Target (Get-Command $t -CommandType Application)[0].Source }
        }
        $module = (Get-Module VDisk).Path
        $output = Invoke-ChildPwsh "Import-Module '$module'; `$env:PATH = '$bin'; try { Mount-VDisk '$qcow2' -MountPath '$folder/missing' -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId; `$_.Exception.Message }"
        $output | Should -Match ([regex]::Escape((Get-ErrorId 'ToolMissing' 'Mount-VDisk')))
        $output | Should -Match "needs $Tool"
        $output | Should -Match "Debian package $Package"
        "$folder/missing" | Should -Not -Exist
    }

    It 'cleans a mount left by a killed session with <Cleaner> on the same path' -ForEach @(@{ Cleaner = 'Mount-VDisk' }, @{ Cleaner = 'Dismount-VDisk -MountPath' }) {
        $mountPath = "$folder/stale-$($Cleaner -replace '\W')"
        $module = (Get-Module VDisk).Path
        $pwshDll = Join-Path $PSHOME 'pwsh.dll'
        $start = [System.Diagnostics.ProcessStartInfo]::new([System.Environment]::ProcessPath)
        foreach ($a in $pwshDll, '-NoProfile', '-NonInteractive', '-Command',
            "Import-Module '$module'; `$m = Mount-VDisk '$qcow2' -MountPath '$mountPath' -WarningAction SilentlyContinue; 'PIDS ' + (`$m.Pids -join ','); [Console]::Out.Flush(); Start-Sleep 600") {
            $start.ArgumentList.Add($a)
        }
        $start.RedirectStandardOutput = $true
        $child = [System.Diagnostics.Process]::Start($start)
        $childPids = @()
        try {
            $line = $child.StandardOutput.ReadLine()
            $line | Should -Match '^PIDS \d+,\d+$'
            $childPids = @(($line -replace '^PIDS ') -split ',' | ForEach-Object { [int]$_ })
            $childPids | ForEach-Object { $recorded.Add($_) }
            Test-MountPoint "$mountPath/p1" | Should -BeTrue
            & kill -9 $child.Id
            $child.WaitForExit()
            # The NBD server died with the session: the FUSE mounts are stale.
            "$mountPath/.vdisk-mount.json" | Should -Exist

            if ($Cleaner -eq 'Mount-VDisk') {
                $m = Mount-VDisk $qcow2 -MountPath $mountPath -WarningVariable warnings -WarningAction SilentlyContinue
                $m.Pids | ForEach-Object { $recorded.Add($_) }
                ($warnings -join "`n") | Should -Match "left behind by process $($child.Id)"
                $childPids | ForEach-Object { Test-PidRunning $_ | Should -BeFalse }
                $seen = Get-TreeHashes "$mountPath/p1"
                foreach ($name in $files1.Keys) { $seen[$name] | Should -Be $files1[$name] -Because $name }
                $m | Dismount-VDisk
            } else {
                Dismount-VDisk -MountPath $mountPath
                $childPids | ForEach-Object { Test-PidRunning $_ | Should -BeFalse }
                Test-MountPoint "$mountPath/p1" | Should -BeFalse
            }
            $mountPath | Should -Not -Exist
            @(Get-ChildItem ([System.IO.Path]::GetTempPath()) -Filter "vdisk-mount-$($child.Id)-*" -Directory).Count | Should -Be 0
        } finally {
            if (-not $child.HasExited) { $child.Kill(); $child.WaitForExit() }
            $child.Dispose()
            foreach ($p in $childPids) { if (Test-PidRunning $p) { Stop-Process -Id $p -Force -ErrorAction SilentlyContinue } }
            foreach ($mp in "$mountPath/p1") { if (Test-MountPoint $mp) { & fusermount3 -u -z $mp } }
        }
    }

    It 'unmounts and stops everything when the session ends' {
        $mountPath = "$folder/exit"
        $module = (Get-Module VDisk).Path
        $output = Invoke-ChildPwsh "Import-Module '$module'; `$m = Mount-VDisk '$qcow2' -MountPath '$mountPath' -WarningAction SilentlyContinue; 'PIDS ' + (`$m.Pids -join ',')"
        $pids = @(([regex]::Match($output, 'PIDS ([\d,]+)').Groups[1].Value) -split ',' | ForEach-Object { [int]$_ })
        $pids | ForEach-Object { $recorded.Add($_) }
        $pids.Count | Should -Be 2
        $pids | ForEach-Object { Test-PidRunning $_ | Should -BeFalse }
        Test-MountPoint "$mountPath/p1" | Should -BeFalse
        $mountPath | Should -Not -Exist
    }
}
