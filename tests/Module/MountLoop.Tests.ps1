# Mount-VDisk through the kernel's loop mount (issue 12: "or the kernel's loop mount where the caller may mount"): a GPT
# disk with an ext4 (fuse2fs), an xfs (made by mkfs.xfs and filled through a loop mount) and a FAT partition, as
# qcow2. The xfs partition is mounted read-only from a read-only loop device over the nbdfuse file, every file with
# the same sha256; Dismount-VDisk unmounts it and detaches the loop device; a loop mount left by a killed session
# (kill -9) is unmounted and detached by the next Mount-VDisk on that path. Without CAP_SYS_ADMIN (a child pwsh under
# setpriv) the module says the loop mount is not permitted and why. Needs root with CAP_SYS_ADMIN, /dev/loop-control,
# mkfs.xfs and the kernel's xfs driver: skipped loudly elsewhere, failing in CI.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
    $capEff = if ($IsLinux) { [Convert]::ToUInt64((((Get-Content /proc/self/status) -match '^CapEff:') -split '\s+')[1], 16) } else { 0 }
    $SkipLoop = $env:CI -ne 'true' -and (
        -not $IsLinux -or -not (Test-Path /dev/fuse) -or -not (Test-Path /dev/loop-control) -or ($capEff -band (1 -shl 21)) -eq 0 -or
        @(Get-Command nbdfuse, fuse2fs, fusermount3, sfdisk, mkfs.ext4, mkfs.vfat, mkfs.xfs, losetup, setpriv -CommandType Application -ErrorAction Ignore).Count -lt 9 -or
        -not (Select-String -Path /proc/filesystems -Pattern '\txfs$' -Quiet))
    if ($SkipLoop) { Write-Warning 'Not root with CAP_SYS_ADMIN, or no /dev/loop-control, xfs driver, mkfs.xfs (xfsprogs), losetup/setpriv (mount, util-linux) or the Mount-VDisk tools: SKIPPING the loop-mount tests (in CI they fail instead).' }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    . (Join-Path $PSScriptRoot 'MountSupport.ps1')

    # A 420 MiB GPT disk: p1 ext4 from $ExtSource (1 MiB, 64 MiB), p2 xfs from $XfsSource (66 MiB, 320 MiB), p3 FAT.
    function New-LoopDisk([string] $Raw, [string] $ExtSource, [string] $XfsSource) {
        & truncate -s 420M $Raw
        "label: gpt`nstart=2048, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4`nstart=135168, size=655360, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4`nstart=792576, size=20480, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7`n" |
            & sfdisk -q $Raw
        if ($LASTEXITCODE) { throw 'sfdisk failed' }
        & mkfs.vfat --offset 792576 $Raw 10240 2>&1 | Out-Null
        Set-Ext4 $Raw $ExtSource
        # The xfs: made by mkfs.xfs, filled through a (test-owned) loop mount, copied into p2.
        $xfs = "$Raw.xfs"
        & truncate -s 320M $xfs
        & mkfs.xfs -q $xfs
        if ($LASTEXITCODE) { throw 'mkfs.xfs failed' }
        $fill = "$Raw.fill"
        $null = New-Item -ItemType Directory $fill
        & mount -o loop $xfs $fill
        if ($LASTEXITCODE) { throw 'mount -o loop of the new xfs failed' }
        try { Copy-Item "$XfsSource/*" $fill -Recurse -Force }
        finally { & umount $fill }
        Remove-Item $fill
        & dd "if=$xfs" "of=$Raw" bs=1M seek=66 conv=notrunc,sparse status=none
        if ($LASTEXITCODE) { throw 'dd failed' }
        Remove-Item $xfs
    }
}

Describe 'Mount-VDisk through the kernel''s loop mount' -Skip:($SkipQemu -or $SkipLoop) {
    BeforeAll {
        $folder = New-TestFolder
        $files1 = New-FileSet "$folder/files1" 1
        $files3 = New-FileSet "$folder/files3" 3
        $raw = "$folder/loop.raw"
        New-LoopDisk $raw "$folder/files1" "$folder/files3"
        $qcow2 = "$folder/loop.qcow2"
        Invoke-QemuImg @('convert', '-q', '-f', 'raw', '-O', 'qcow2', $raw, $qcow2) | Out-Null
        Remove-Item $raw
        $script:recorded = [System.Collections.Generic.List[int]]::new()
    }
    AfterEach {
        Stop-Leftovers $recorded
    }

    It 'mounts the xfs partition read-only from a loop device with every file intact; Dismount-VDisk detaches it' {
        [VDisk.PowerShell.Commands.MountVDiskCommand]::LoopMountUnavailable | Should -BeNullOrEmpty
        $before = (Get-FileHash $qcow2).Hash
        $mountPath = "$folder/m"
        $m = Mount-VDisk $qcow2 -MountPath $mountPath -WarningVariable warnings -WarningAction SilentlyContinue
        $m.Pids | ForEach-Object { $recorded.Add($_) }
        $m.Partitions.FileSystem[0..1] | Should -Be @('ext4', 'xfs')
        $m.Partitions[2].FileSystem | Should -Match '^fat'
        $m.Partitions[1].MountedAt | Should -Be "$mountPath/p2"
        $m.Partitions[1].SkippedReason | Should -BeNullOrEmpty
        Test-MountPoint "$mountPath/p2" | Should -BeTrue
        $line = (Get-Content /proc/self/mountinfo) | Where-Object { ($_ -split ' ')[4] -eq "$mountPath/p2" }
        $line | Should -Match ' - xfs /dev/loop\d+ ro'
        $devices = @(Get-LoopDevicesOf $PID)
        $devices.Count | Should -Be 1
        (& losetup --noheadings --output RO,OFFSET,SIZELIMIT $devices[0]).Trim() -split '\s+' | Should -Be @('1', "$(135168 * 512)", "$(655360 * 512)")

        $seen = Get-TreeHashes "$mountPath/p2"
        $seen.Count | Should -Be $files3.Count
        foreach ($name in $files3.Keys) { $seen[$name] | Should -Be $files3[$name] -Because $name }
        $seen = Get-TreeHashes "$mountPath/p1"
        foreach ($name in $files1.Keys) { $seen[$name] | Should -Be $files1[$name] -Because $name }
        { Set-Content "$mountPath/p2/new.txt" 'x' -ErrorAction Stop } | Should -Throw
        if ($expectedFat = Get-ExpectedLoopSkip 'vfat') {
            $m.Partitions[2].SkippedReason | Should -Match ([regex]::Escape($expectedFat))
            ($warnings -join "`n") | Should -Match 'partition 3 not mounted'
        } else {
            $m.Partitions[2].MountedAt | Should -Be "$mountPath/p3"
        }

        $m | Dismount-VDisk
        Test-MountPoint "$mountPath/p2" | Should -BeFalse
        @(Get-LoopDevicesOf $PID).Count | Should -Be 0
        $mountPath | Should -Not -Exist
        $m.Pids | ForEach-Object { Test-PidRunning $_ | Should -BeFalse }
        @(Get-ChildItem ([System.IO.Path]::GetTempPath()) -Filter "vdisk-mount-$PID-*" -Directory).Count | Should -Be 0
        (Get-FileHash $qcow2).Hash | Should -Be $before
    }

    It 'unmounts and detaches a loop mount left by a killed session on the next Mount-VDisk on that path' {
        $mountPath = "$folder/stale"
        $module = (Get-Module VDisk).Path
        $start = [System.Diagnostics.ProcessStartInfo]::new([System.Environment]::ProcessPath)
        foreach ($a in (Join-Path $PSHOME 'pwsh.dll'), '-NoProfile', '-NonInteractive', '-Command',
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
            Test-MountPoint "$mountPath/p2" | Should -BeTrue
            @(Get-LoopDevicesOf $child.Id).Count | Should -Be 1
            & kill -9 $child.Id
            $child.WaitForExit()
            Test-MountPoint "$mountPath/p2" | Should -BeTrue -Because 'a kernel mount outlives the process that made it'

            $m = Mount-VDisk $qcow2 -MountPath $mountPath -WarningVariable warnings -WarningAction SilentlyContinue
            $m.Pids | ForEach-Object { $recorded.Add($_) }
            ($warnings -join "`n") | Should -Match "left behind by process $($child.Id)"
            @(Get-LoopDevicesOf $child.Id).Count | Should -Be 0
            $childPids | ForEach-Object { Test-PidRunning $_ | Should -BeFalse }
            $seen = Get-TreeHashes "$mountPath/p2"
            foreach ($name in $files3.Keys) { $seen[$name] | Should -Be $files3[$name] -Because $name }
            $m | Dismount-VDisk
            $mountPath | Should -Not -Exist
            @(Get-LoopDevicesOf $PID).Count | Should -Be 0
        } finally {
            if (-not $child.HasExited) { $child.Kill(); $child.WaitForExit() }
            $child.Dispose()
            foreach ($p in $childPids) { if (Test-PidRunning $p) { Stop-Process -Id $p -Force -ErrorAction SilentlyContinue } }
            foreach ($mp in "$mountPath/p2") { if (Test-MountPoint $mp) { & umount -l $mp } }
            foreach ($d in Get-LoopDevicesOf $child.Id) { & losetup -d $d }
            foreach ($mp in "$mountPath/p1") { if (Test-MountPoint $mp) { & fusermount3 -u -z $mp } }
        }
    }

    It 'skips the xfs partition naming the Debian package mount when losetup is missing, and mounts the ext4 one' {
        # A PATH of links to every tool but losetup.
        $bin = New-TestFolder
        foreach ($t in 'nbdfuse', 'fuse2fs', 'fusermount3', 'setsid', 'mount', 'umount') {
            $null = New-Item -ItemType SymbolicLink -Path "$bin/$t" -Target (Get-Command $t -CommandType Application)[0].Source
        }
        $module = (Get-Module VDisk).Path
        $output = Invoke-ChildPwsh ("Import-Module '$module'; `$env:PATH = '$bin'; `$m = Mount-VDisk '$qcow2' -MountPath '$folder/nolosetup' -WarningAction SilentlyContinue; " +
            "'P1 ' + `$m.Partitions[0].MountedAt; 'P2 ' + `$m.Partitions[1].SkippedReason; `$m | Dismount-VDisk")
        $output | Should -Match ([regex]::Escape("P1 $folder/nolosetup/p1"))
        $output | Should -Match 'P2 file system xfs needs the kernel''s loop mount, which cannot be used here: losetup is not installed \(or not on PATH\): install the Debian package mount'
        $output | Should -Match 'Without it Mount-VDisk mounts ext2, ext3 and ext4'
        "$folder/nolosetup" | Should -Not -Exist
    }

    It 'says the loop mount is not permitted, and why, in a process without CAP_SYS_ADMIN' {
        $module = (Get-Module VDisk).Path
        $output = & setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin -- ([System.Environment]::ProcessPath) (Join-Path $PSHOME 'pwsh.dll') -NoProfile -NonInteractive -Command `
            "Import-Module '$module'; [VDisk.PowerShell.Commands.MountVDiskCommand]::LoopMountUnavailable" 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($output -join "`n")
        ($output -join ' ') | Should -Match '^mounting is not permitted: this process runs as root without CAP_SYS_ADMIN .*needs CAP_SYS_ADMIN'
    }
}
