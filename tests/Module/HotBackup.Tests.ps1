# Backup-VDisk -Domain against a real libvirtd and a running TCG domain (issue 11 "Hot backup of a running VM"): the
# tests start their own virtlogd and libvirtd on a private socket (LibvirtSupport.ps1), run a domain with a qcow2 disk
# holding known data (vda), a qcow2 overlay on a backing file (vdb: only its top layer may take the commit) and a
# read-only raw disk (vdc: skipped), and inject guest writes with HMP qemu-io while a backup is held between its
# snapshot and its commit (the backup waits, with -Wait, for a set the test has locked). Every path that fails or is
# stopped after the snapshot must end with the domain on its images and no overlay left. Daemons and domains are
# stopped by pid whatever happens.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'LibvirtSupport.ps1')
    $problem = Get-LibvirtProblem
    $SkipLibvirt = $problem -and $env:CI -ne 'true'
    if ($SkipLibvirt) { Write-Warning "SKIPPING the hot backup tests: $problem (in CI they fail instead)." }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    . (Join-Path $PSScriptRoot 'LibvirtSupport.ps1')
    if ($problem = Get-LibvirtProblem) {
        if ($env:CI -ne 'true') { return }
        throw "The hot backup tests cannot run: $problem (.ci/run installs and sets up libvirt)."
    }
    $script:domain = "vdisk-hot-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    $script:offline = "$domain-off"
    $script:daemon = Start-TestLibvirt -Isolated
    $script:uri = $daemon.Uri
    $script:dir = $daemon.Folder
    $script:vda = "$dir/$domain-vda.qcow2"
    $script:vdbBase = "$dir/$domain-vdb-base.qcow2"
    $script:vdb = "$dir/$domain-vdb.qcow2"
    $script:vdc = "$dir/$domain-vdc.img"
    Invoke-QemuImg @('create', '-q', '-f', 'qcow2', $vda, '64M')
    Invoke-QemuIo $vda 'write -P 0xa1 0 32M'
    Invoke-QemuImg @('create', '-q', '-f', 'qcow2', $vdbBase, '16M')
    Invoke-QemuIo $vdbBase 'write -P 0xb1 0 16M'
    Invoke-QemuImg @('create', '-q', '-f', 'qcow2', '-b', $vdbBase, '-F', 'qcow2', $vdb)
    Invoke-QemuIo $vdb 'write -P 0xb2 8M 1M'
    Invoke-QemuImg @('create', '-q', '-f', 'raw', $vdc, '4M')
    $script:vdbBaseHash = (Get-FileHash -LiteralPath $vdbBase).Hash
    Set-Content -LiteralPath "$dir/domain.xml" -Value @"
<domain type='qemu'>
  <name>$domain</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' io='native'/>
      <source file='$vda'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$vdb'/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='$vdc'/>
      <target dev='vdc' bus='virtio'/>
      <readonly/>
    </disk>
  </devices>
</domain>
"@
    & virsh -q -c $uri define "$dir/domain.xml" | Out-Null
    if ($LASTEXITCODE -ne 0) { throw 'virsh define failed' }
    & virsh -q -c $uri start $domain | Out-Null
    if ($LASTEXITCODE -ne 0) { throw 'virsh start failed' }

    # The guest's view of an image (through its backing chain) as a raw file, read with -U as the VM holds it.
    function Get-GuestHash([string] $Image) {
        $raw = Join-Path $dir "guest-$([guid]::NewGuid().ToString('N')).raw"
        Invoke-QemuImg @('convert', '-U', '-O', 'raw', $Image, $raw) | Out-Null
        try { (Get-FileHash -LiteralPath $raw).Hash } finally { Remove-Item -LiteralPath $raw }
    }
    # A backup point restored to a raw file: its hash.
    function Get-PointHash($Point) {
        $raw = Join-Path $dir "restored-$([guid]::NewGuid().ToString('N')).raw"
        $Point | Restore-VDiskBackup -DestinationPath $raw -DestinationFormat Raw | Out-Null
        try { (Get-FileHash -LiteralPath $raw).Hash } finally { Remove-Item -LiteralPath $raw }
    }
    # True when qemu-io reads the pattern of $Read ('read -P 0xc2 16M 4M') from the image (-U: the VM holds it).
    function Test-Pattern([string] $Image, [string] $Read) {
        $out = & qemu-io -r -U -c $Read $Image 2>&1 | Out-String
        $out -match '^read \d+/\d+ bytes' -and $out -notmatch 'Pattern verification failed'
    }
    # Target -> source file, as the running QEMU has it.
    function Get-LiveDisks {
        $disks = @{}
        foreach ($line in & virsh -q -c $uri domblklist $domain) {
            $fields = $line.Trim() -split '\s+', 2
            if ($fields.Count -eq 2) { $disks[$fields[0]] = $fields[1] }
        }
        $disks
    }
    function Get-Overlays { @(Get-ChildItem -LiteralPath $dir -Filter '*.vdisk-backup-*') }
    function Send-GuestWrite([int] $Index, [string] $Write) {
        $out = & virsh -q -c $uri qemu-monitor-command $domain --hmp "qemu-io -d /machine/peripheral/virtio-disk$Index/virtio-backend `"$Write`"" 2>&1
        if ($LASTEXITCODE -ne 0) { throw "HMP qemu-io failed: $out" }
    }
    # Takes a set's lock, as another backup into it would: a backup with -Wait then holds between snapshot and commit.
    function Lock-Set([string] $Folder) {
        New-Item -ItemType Directory -Force -Path $Folder | Out-Null
        [System.IO.File]::Open((Join-Path $Folder '.vdisk-backup.lock'), 'OpenOrCreate', 'ReadWrite', 'None')
    }
    # Backup-VDisk in another runspace of this process; @{ PowerShell; Handle }.
    function Start-Backup([hashtable] $Parameters) {
        $ps = [powershell]::Create()
        $null = $ps.AddScript({
                param($module, $parameters)
                Import-Module $module
                Backup-VDisk @parameters
            }).AddArgument($modulePath).AddArgument($Parameters)
        @{ PowerShell = $ps; Handle = $ps.BeginInvoke() }
    }
    # Waits until the running backup has put disk $Target on an overlay; returns the overlay's path.
    function Wait-Overlay([string] $Target, $Job) {
        $deadline = (Get-Date).AddSeconds(60)
        while ((Get-Date) -lt $deadline) {
            if ((Get-LiveDisks)[$Target] -match '\.vdisk-backup-') { return (Get-LiveDisks)[$Target] }
            if ($Job.Handle.IsCompleted) { throw "The backup ended before the snapshot: $($Job.PowerShell.Streams.Error -join '; ')" }
            Start-Sleep -Milliseconds 100
        }
        throw "No overlay for $Target after 60 s"
    }
}

AfterAll {
    Stop-TestLibvirt $script:daemon @($script:domain, $script:offline)
    if ($script:daemon) { Remove-Item -LiteralPath $script:daemon.Folder -Recurse -Force -ErrorAction Ignore }
}

Describe 'Backup-VDisk -Domain of a running domain' -Skip:$SkipLibvirt {
    BeforeAll {
        $script:dest = Join-Path $dir 'backups'
    }

    It '-WhatIf says what would happen and changes nothing' {
        $transcript = Join-Path $dir 'whatif.txt'
        Start-Transcript -LiteralPath $transcript | Out-Null
        Backup-VDisk -Domain $domain -Uri $uri -Destination $dest -WhatIf -WarningAction SilentlyContinue
        Stop-Transcript | Out-Null
        $out = (Get-Content -LiteralPath $transcript -Raw) -replace '\s+', ' '
        $out | Should -Match 'Hot backup \(running\): an external snapshot puts vda on .*\.vdisk-backup-'
        $out | Should -Match "into $([regex]::Escape("$dest/$domain-vdb"))"
        Test-Path -LiteralPath $dest | Should -BeFalse
        Get-Overlays | Should -BeNullOrEmpty
        (Get-LiveDisks)['vda'] | Should -Be $vda
    }

    It 'backs up the content at the snapshot; guest writes during the backup land in the live images, not in the backup' {
        $script:vdaBefore = Get-GuestHash $vda
        $script:vdbBefore = Get-GuestHash $vdb
        $lock = Lock-Set "$dest/$domain-vda"
        try {
            $job = Start-Backup @{ Domain = $domain; Uri = $uri; Destination = $dest; Wait = $true }
            Wait-Overlay vda $job | Should -BeLike "$vda.vdisk-backup-*.qcow2"
            (Get-LiveDisks)['vdb'] | Should -BeLike "$vdb.vdisk-backup-*.qcow2"
            (Get-LiveDisks)['vdc'] | Should -Be $vdc -Because 'a read-only disk is not snapshotted'
            Send-GuestWrite 0 'write -P 0xc2 16M 4M'
            Send-GuestWrite 1 'write -P 0xc3 0 1M'
        }
        finally { $lock.Dispose() }
        $points = @($job.PowerShell.EndInvoke($job.Handle))
        $job.PowerShell.Streams.Error | Should -BeNullOrEmpty
        $job.PowerShell.Streams.Warning.Message | Should -Match 'disk vdc is skipped: it is read-only'
        $job.PowerShell.Dispose()

        $points.Count | Should -Be 2
        $points.SetPath | Should -Be @("$dest/$domain-vda", "$dest/$domain-vdb")
        $points.Kind | Should -Be @('Full', 'Full')
        $points.SourcePath | Should -Be @($vda, $vdb)
        # The domain is back on its images, with no overlay left ...
        $live = Get-LiveDisks
        $live['vda'] | Should -Be $vda
        $live['vdb'] | Should -Be $vdb
        $live['vdc'] | Should -Be $vdc
        Get-Overlays | Should -BeNullOrEmpty
        # ... which hold the writes made during the backup (committed from the overlays) ...
        Test-Pattern $vda 'read -P 0xc2 16M 4M' | Should -BeTrue
        Test-Pattern $vda 'read -P 0xa1 0 16M' | Should -BeTrue
        Test-Pattern $vdb 'read -P 0xc3 0 1M' | Should -BeTrue
        # ... while the backups hold exactly the content at the snapshot.
        Get-PointHash $points[0] | Should -Be $vdaBefore
        Get-PointHash $points[1] | Should -Be $vdbBefore
        Get-GuestHash $vda | Should -Not -Be $vdaBefore
        # vdb's commit went into its top layer only: its backing file is untouched, the chain intact.
        (Get-FileHash -LiteralPath $vdbBase).Hash | Should -Be $vdbBaseHash
        ((Invoke-QemuImg @('info', '-U', '--output=json', $vdb)) -join "`n" | ConvertFrom-Json).'backing-filename' | Should -Be $vdbBase
        foreach ($image in $vda, $vdb) {
            $check = (Invoke-QemuImg @('check', '-U', '--output=json', $image) -AllowedExitCodes 0, 2, 3) -join "`n" | ConvertFrom-Json
            $check.corruptions | Should -BeNullOrEmpty -Because "$image must check clean"
            $check.leaks | Should -BeNullOrEmpty -Because "$image must have no leaks"
        }
    }

    It 'writes an incremental point the second time, with only what changed' {
        $points = @(Backup-VDisk -Domain $domain -Uri $uri -Destination $dest -WarningAction SilentlyContinue)
        $points.Kind | Should -Be @('Incremental', 'Incremental')
        $points[0].ChangedBytes | Should -Be 4MB
        $points[1].ChangedBytes | Should -Be 1MB
        Get-PointHash $points[0] | Should -Be (Get-GuestHash $vda)
        Get-PointHash $points[1] | Should -Be (Get-GuestHash $vdb)
        (Get-LiveDisks)['vda'] | Should -Be $vda
        Get-Overlays | Should -BeNullOrEmpty
    }

    It 'writes into -Destination itself when it is a set and -Target names one disk' {
        $point = Backup-VDisk -Domain $domain -Uri $uri -Target vda -Destination "$dest/$domain-vda"
        $point.SetPath | Should -Be "$dest/$domain-vda"
        $point.Kind | Should -Be 'Incremental'
        $point.ChangedBytes | Should -Be 0
        Get-Overlays | Should -BeNullOrEmpty
    }

    It 'refuses a set as -Destination for several disks, before any snapshot' {
        Backup-VDisk -Domain $domain -Uri $uri -Destination "$dest/$domain-vda" -ErrorVariable err -ErrorAction SilentlyContinue -WarningAction SilentlyContinue |
            Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId InvalidArgument Backup-VDisk)
        $err[0].Exception.Message | Should -Match 'one backup set.*-Target'
    }

    It 'ends on the original images when the backup fails after the snapshot (a set locked by another backup)' {
        $count = (Get-VDiskBackup "$dest/$domain-vda").Count
        $lock = Lock-Set "$dest/$domain-vda"
        try {
            $points = @(Backup-VDisk -Domain $domain -Uri $uri -Destination $dest -ErrorVariable err -ErrorAction SilentlyContinue -WarningAction SilentlyContinue)
        }
        finally { $lock.Dispose() }
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId ImageInUse Backup-VDisk)
        $err[0].TargetObject | Should -Be "$dest/$domain-vda"
        $points.SetPath | Should -Be "$dest/$domain-vdb" -Because 'the other disk is backed up all the same'
        $live = Get-LiveDisks
        $live['vda'] | Should -Be $vda
        $live['vdb'] | Should -Be $vdb
        Get-Overlays | Should -BeNullOrEmpty
        (Get-VDiskBackup "$dest/$domain-vda").Count | Should -Be $count
    }

    It 'ends on the original images, with the writes made meanwhile, when stopped (Ctrl+C) after the snapshot' {
        $count = (Get-VDiskBackup "$dest/$domain-vda").Count
        $lock = Lock-Set "$dest/$domain-vda"
        try {
            $job = Start-Backup @{ Domain = $domain; Uri = $uri; Destination = $dest; Wait = $true }
            Wait-Overlay vda $job | Out-Null
            Send-GuestWrite 0 'write -P 0xd4 40M 2M'
            $job.PowerShell.Stop()
        }
        finally { $lock.Dispose() }
        $job.PowerShell.InvocationStateInfo.State | Should -Be 'Stopped'
        $job.PowerShell.Dispose()
        $live = Get-LiveDisks
        $live['vda'] | Should -Be $vda
        $live['vdb'] | Should -Be $vdb
        Get-Overlays | Should -BeNullOrEmpty
        Test-Pattern $vda 'read -P 0xd4 40M 2M' | Should -BeTrue
        (Get-VDiskBackup "$dest/$domain-vda").Count | Should -Be $count
    }

    It 'says which disk runs on which overlay, and the command that finishes it, when the commit cannot be done' {
        # A reader of the image (allowed once it is a read-only backing file) makes QEMU's commit fail: it needs "write".
        $lock = Lock-Set "$dest/$domain-vda"
        $holder = $null
        try {
            $job = Start-Backup @{ Domain = $domain; Uri = $uri; Destination = $dest; Target = 'vda'; Wait = $true }
            $overlay = Wait-Overlay vda $job
            $start = [System.Diagnostics.ProcessStartInfo]::new('stdbuf')
            foreach ($a in '-oL', 'qemu-io', '-r', '-f', 'qcow2', '-c', 'read 0 512', '-c', 'sleep 60000', $vda) { $start.ArgumentList.Add($a) }
            $start.RedirectStandardOutput = $true
            $start.RedirectStandardError = $true
            $holder = [System.Diagnostics.Process]::Start($start)
            $holder.StandardOutput.ReadLine() | Should -Match '^read' -Because 'a consistent read of the backing image is allowed'
            $lock.Dispose()
            $points = @($job.PowerShell.EndInvoke($job.Handle))
            $errors = @($job.PowerShell.Streams.Error)
            $job.PowerShell.Dispose()
        }
        finally {
            $lock.Dispose()
            if ($holder) { $holder.Kill(); $holder.WaitForExit() }
        }
        $points.Count | Should -Be 1 -Because 'the backup itself succeeded'
        $errors.Count | Should -Be 1
        $errors[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId LibvirtFailed Backup-VDisk)
        $message = $errors[0].Exception.Message
        $message | Should -Match "Disk vda runs on overlay $([regex]::Escape($overlay)) \(backed by $([regex]::Escape($vda))\)"
        $message | Should -Match 'write'
        (Get-LiveDisks)['vda'] | Should -Be $overlay
        $command = ($message -split "`n" | Select-String 'To finish, run: (.*)$').Matches[0].Groups[1].Value
        $command | Should -Match '^virsh -c .* blockcommit .* vda --active --shallow --pivot --wait --verbose && rm -f -- '
        & bash -c $command *> $null
        $LASTEXITCODE | Should -Be 0
        (Get-LiveDisks)['vda'] | Should -Be $vda
        Get-Overlays | Should -BeNullOrEmpty
    }

    It 'refuses a read-only disk named with -Target, and reports unknown targets and domains' {
        Backup-VDisk -Domain $domain -Uri $uri -Target vdc -Destination $dest -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId UnsupportedFeature Backup-VDisk)
        $err[0].Exception.Message | Should -Match 'disk vdc cannot be backed up: it is read-only'
        Backup-VDisk -Domain $domain -Uri $uri -Target vdq -Destination $dest -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId DiskTargetNotFound Backup-VDisk)
        Backup-VDisk -Domain 'no-such-domain' -Uri $uri -Destination $dest -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId DomainNotFound Backup-VDisk)
        # A destination that cannot be made (a file where a folder must be) fails before the snapshot.
        Set-Content -LiteralPath "$dir/not-a-folder" -Value x
        Backup-VDisk -Domain $domain -Uri $uri -Destination "$dir/not-a-folder/backups" -ErrorVariable err -ErrorAction SilentlyContinue -WarningAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId IOError Backup-VDisk)
        (Get-LiveDisks)['vda'] | Should -Be $vda
        Get-Overlays | Should -BeNullOrEmpty
    }
}

Describe 'Backup-VDisk -Domain of a domain that is shut off' -Skip:$SkipLibvirt {
    It 'backs up the images its definition names, offline, with no snapshot' {
        $image = "$dir/$offline.qcow2"
        Invoke-QemuImg @('create', '-q', '-f', 'qcow2', $image, '8M')
        Invoke-QemuIo $image 'write -P 0x5e 1M 2M'
        $xml = (Get-Content -LiteralPath "$dir/domain.xml" -Raw) -replace "<name>$domain</name>", "<name>$offline</name>" -replace '(?s)\s*<disk.*</disk>', ''
        $xml = $xml.Replace('</devices>', "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$image'/><target dev='vda' bus='virtio'/></disk></devices>")
        Set-Content -LiteralPath "$dir/offline.xml" -Value $xml
        & virsh -q -c $uri define "$dir/offline.xml" | Out-Null
        $LASTEXITCODE | Should -Be 0
        $point = Backup-VDisk -Domain $offline -Uri $uri -Destination (Join-Path $dir 'offline')
        $point.SetPath | Should -Be (Join-Path $dir "offline/$offline-vda")
        $point.SourcePath | Should -Be $image
        Get-PointHash $point | Should -Be (Get-GuestHash $image)
        @(Get-ChildItem -LiteralPath $dir | Where-Object Name -Like "$offline.qcow2.vdisk-backup-*") | Should -BeNullOrEmpty
        (& virsh -q -c $uri domstate $offline) | Should -Be 'shut off'
    }
}
