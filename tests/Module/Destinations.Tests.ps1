# Unsafe destinations (issue 7), through the cmdlets: -Force never replaces an image a VM (qemu-io here) has open;
# a block device is written in place and what cannot take an image is refused (UnsupportedDestination); a link to
# the source is the source (DestinationIsSource); Falloc on a full file system fails and without fallocate warns;
# error ids for sizes, cluster sizes, a destination created meanwhile and dangling links. Loop devices and mounts
# need root: outside CI those tests are skipped without it, in CI they fail.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
    $SkipRoot = $env:CI -ne 'true' -and (& id -u) -ne '0'
    if ($SkipRoot) { Write-Warning 'Not root: SKIPPING the loop-device and mount tests (in CI they fail instead).' }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    function Get-Inode([string] $Path) { [ulong](& stat -L -c %i $Path) }

    function Get-FileSha([string] $Path) { (Get-FileHash -LiteralPath $Path).Hash }

    # Runs a host tool and fails the test when it fails.
    function Invoke-Tool([string] $Tool, [string[]] $Arguments) {
        $output = & $Tool @Arguments 2>&1
        if ($LASTEXITCODE -ne 0) { throw "$Tool $($Arguments -join ' ') exited with $LASTEXITCODE`n$($output -join "`n")" }
        $output
    }

}

Describe 'New-VDisk and Convert-VDisk -Force with an image a VM has open' {
    BeforeEach {
        $folder = New-TestFolder
        $source = New-PatternImage "$folder/src.raw" 4MB 0
        $target = "$folder/vm.qcow2"
    }

    It 'refuse it with ImageInUse and leave the same file with the same content' -Skip:$SkipQemu {
        $null = Invoke-QemuImg @('create', '-q', '-f', 'qcow2', $target, '8M')
        Invoke-QemuIo $target 'write -P 0x5a 0 1M'
        $inode = Get-Inode $target
        $hash = Get-FileSha $target
        $holder = Start-QemuHolder $target 'qcow2'
        try {
            Convert-VDisk $source $target -Force -ErrorVariable convertErr -ErrorAction SilentlyContinue
            New-VDisk $target 1GB -Force -ErrorVariable newErr -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        } finally {
            Stop-QemuHolder $holder
        }
        foreach ($err in @($convertErr[0], $newErr[0])) {
            $err.FullyQualifiedErrorId | Should -BeLike 'ImageInUse,*'
            $err.CategoryInfo.Category | Should -Be 'ResourceUnavailable'
            $err.TargetObject | Should -Be $target
            $err.Exception.Message | Should -Match 'not replaced'
        }
        $convertErr[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageInUse' 'Convert-VDisk')
        $newErr[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageInUse' 'New-VDisk')
        Get-Inode $target | Should -Be $inode
        Get-FileSha $target | Should -Be $hash
        @(Get-ChildItem -LiteralPath $folder -Force -Name) | Sort-Object | Should -Be @('src.raw', 'vm.qcow2')
    }
}

Describe 'Convert-VDisk into a block device' {
    BeforeEach {
        $folder = New-TestFolder
        $devices = [System.Collections.Generic.List[string]]::new()
        # Old data everywhere on the device, so what the conversion must overwrite (or zero) is visible.
        function New-OldData([int] $Length) {
            $data = [byte[]]::new($Length)
            [Array]::Fill($data, [byte]0xee)
            , $data
        }
        # A loop device, reached through a private node in the test folder, never through /dev/loopN: code that
        # wrongly replaced a destination node with a file (the bug tested here) must not destroy the host's /dev.
        function New-LoopDevice([int] $Length) {
            $backing = Join-Path $folder "backing$($devices.Count)"
            [System.IO.File]::WriteAllBytes($backing, (New-OldData $Length))
            $device = (Invoke-Tool 'losetup' @('-f', '--show', $backing)) -join ''
            $devices.Add($device)
            $major, $minor = (& stat -c '%t %T' $device) -split ' ' | ForEach-Object { [Convert]::ToInt32($_, 16) }
            Invoke-Tool 'mknod' @('-m', '600', "$backing.dev", 'b', $major, $minor)
            "$backing.dev"
        }
    }
    AfterEach {
        foreach ($device in $devices) { & losetup -d $device }
    }

    It 'writes raw in place with -Force: the node stays, qemu-img compare finds the content identical' -Skip:($SkipRoot -or $SkipQemu) {
        $null = Invoke-QemuImg @('create', '-q', '-f', 'qcow2', "$folder/src.qcow2", '8M')
        Invoke-QemuIo "$folder/src.qcow2" 'write -P 0x33 1M 1M', 'write -P 0x44 6M 64k'
        $device = New-LoopDevice 8MB
        $node = & stat -c '%t:%T:%i' $device

        Convert-VDisk "$folder/src.qcow2" $device -DestinationFormat Raw -Force -ErrorAction Stop

        & stat -c '%t:%T:%i' $device | Should -Be $node
        (& stat -c %F $device) | Should -Be 'block special file'
        $null = Invoke-QemuImg @('compare', '-f', 'qcow2', '-F', 'raw', "$folder/src.qcow2", $device)
    }

    It '<Name>' -Skip:$SkipRoot -ForEach @(
        @{ Name = 'FileExists without -Force'; Arguments = @{ DestinationFormat = 'Raw' }; Id = 'FileExists'; Size = 8MB }
        @{ Name = 'UnsupportedDestination for qcow2 output'; Arguments = @{ DestinationFormat = 'Qcow2'; Force = $true }; Id = 'UnsupportedDestination'; Size = 8MB }
        @{ Name = 'UnsupportedDestination for a device smaller than the image'; Arguments = @{ DestinationFormat = 'Raw'; Force = $true }; Id = 'UnsupportedDestination'; Size = 2MB }
    ) {
        $source = New-PatternImage "$folder/src.raw" 4MB 0
        $device = New-LoopDevice $Size
        Convert-VDisk $source $device @Arguments -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId $Id 'Convert-VDisk')
        $err[0].TargetObject | Should -Be $device
        [System.Linq.Enumerable]::SequenceEqual([System.IO.File]::ReadAllBytes($device), (New-OldData $Size)) | Should -BeTrue
    }

    It 'New-VDisk refuses a block device with UnsupportedDestination' -Skip:$SkipRoot {
        $device = New-LoopDevice 4MB
        New-VDisk $device 1MB -Format Raw -Force -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'UnsupportedDestination' 'New-VDisk')
        $err[0].Exception.Message | Should -Match 'Convert-VDisk -DestinationFormat Raw -Force'
        (& stat -c %F $device) | Should -Be 'block special file'
    }
}

Describe 'Destinations that are not files' {
    BeforeEach {
        $folder = New-TestFolder
        $source = New-PatternImage "$folder/src.raw" 1MB 0
    }

    It 'UnsupportedDestination for <Name>, kept as it is, even with -Force' -ForEach @(
        @{ Name = 'a FIFO'; Kind = 'fifo' }
        @{ Name = 'a socket'; Kind = 'socket' }
        @{ Name = 'a character device (through a link to /dev/null)'; Kind = 'character special file' }
    ) {
        $node = "$folder/node"
        $socket = $null
        switch ($Kind) {
            'fifo' { Invoke-Tool 'mkfifo' @($node) }
            'socket' {
                $socket = [System.Net.Sockets.Socket]::new('Unix', 'Stream', 'Unspecified')
                $socket.Bind([System.Net.Sockets.UnixDomainSocketEndPoint]::new($node))
            }
            default { $null = New-Item -ItemType SymbolicLink -Path $node -Target '/dev/null' }
        }
        try {
            $kindBefore = & stat -L -c %F $node
            Convert-VDisk $source $node -DestinationFormat Raw -Force -ErrorVariable convertErr -ErrorAction SilentlyContinue
            New-VDisk $node 1MB -Format Raw -Force -ErrorVariable newErr -ErrorAction SilentlyContinue
            $convertErr[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'UnsupportedDestination' 'Convert-VDisk')
            $newErr[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'UnsupportedDestination' 'New-VDisk')
            $convertErr[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
            $convertErr[0].TargetObject | Should -Be $node
            $convertErr[0].Exception.Message | Should -Match ([regex]::Escape($Name.Split(' ')[1]))
            & stat -L -c %F $node | Should -Be $kindBefore
            @(Get-ChildItem -LiteralPath $folder -Force -Name) | Sort-Object | Should -Be @('node', 'src.raw')
        } finally {
            if ($socket) { $socket.Dispose() }
        }
    }
}

Describe 'Convert-VDisk onto a link to the source' {
    BeforeEach {
        $folder = New-TestFolder
        $source = New-PatternImage "$folder/src.raw" 2MB 0
        $hash = Get-FileSha $source
    }

    It 'DestinationIsSource for a <Kind> link, even with -Force, and nothing changes' -ForEach @{ Kind = 'symbolic' }, @{ Kind = 'hard' } {
        $link = "$folder/link.raw"
        if ($Kind -eq 'symbolic') { $null = New-Item -ItemType SymbolicLink -Path $link -Target $source }
        else { $null = New-Item -ItemType HardLink -Path $link -Target $source }

        Convert-VDisk $source $link -DestinationFormat Raw -Force -ErrorVariable err -ErrorAction SilentlyContinue

        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'DestinationIsSource' 'Convert-VDisk')
        $err[0].TargetObject | Should -Be $source
        $err[0].Exception.Message | Should -Match 'link to the source'
        Get-Inode $link | Should -Be (Get-Inode $source)
        if ($Kind -eq 'symbolic') { (Get-Item -LiteralPath $link).LinkTarget | Should -Be $source }
        else { & stat -c %h $source | Should -Be '2' }
        Get-FileSha $source | Should -Be $hash
    }
}

Describe 'New-VDisk -Preallocation Falloc on small file systems' {
    BeforeEach {
        $folder = New-TestFolder
        $mount = "$folder/mnt"
        $null = New-Item -ItemType Directory -Path $mount
    }
    AfterEach {
        if ((& findmnt -n $mount) -ne $null) { & umount $mount }
    }

    It 'fails with IOError on a full file system and leaves nothing (<Format>)' -Skip:$SkipRoot -ForEach @{ Format = 'Raw' }, @{ Format = 'Qcow2' } {
        # A 4 MiB file system with 1 MiB left: room for the image's metadata, not for its 16 MiB.
        Invoke-Tool 'mount' @('-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', $mount)
        $free = [System.IO.DriveInfo]::new($mount).AvailableFreeSpace
        Invoke-Tool 'fallocate' @('-l', ($free - 1MB), "$mount/filler")

        New-VDisk "$mount/disk.img" 16MB -Format $Format -Preallocation Falloc -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty

        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'IOError' 'New-VDisk')
        $err[0].TargetObject | Should -Be "$mount/disk.img"
        $err[0].Exception.Message | Should -Match 'No space left on device'
        @(Get-ChildItem -LiteralPath $mount -Force -Name) | Should -Be @('filler')
    }

    It 'reserves the space by writing and warns where the file system has no fallocate (ramfs)' -Skip:$SkipRoot {
        Invoke-Tool 'mount' @('-t', 'ramfs', 'ramfs', $mount)
        $info = New-VDisk "$mount/disk.raw" 16MB -Preallocation Falloc -WarningVariable warnings -WarningAction SilentlyContinue
        $warnings | Should -HaveCount 1
        $warnings[0].Message | Should -Match "^$([regex]::Escape("$mount/disk.raw")): The file system of '.*' does not support fallocate"
        $info.FileSize | Should -Be 16MB
        [long](& stat -c %b "$mount/disk.raw") * 512 | Should -BeGreaterOrEqual 16MB
    }
}

Describe 'Error ids for sizes, cluster sizes, races and dangling links' {
    BeforeEach {
        $folder = New-TestFolder
    }

    It 'InvalidArgument "too large" for -SizeBytes 9223372036854775807 (<_>)' -ForEach 'x.vmdk', 'x.qcow2', 'x.raw', 'x.vdi' {
        New-VDisk "$folder/$_" -SizeBytes 9223372036854775807 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'New-VDisk')
        $err[0].Exception.Message | Should -Match '9223372036854775807 is too large'
        "$folder/$_" | Should -Not -Exist
    }

    It 'InvalidArgument naming -ClusterSizeBytes 4294967295 as given (<Cmdlet>)' -ForEach @{ Cmdlet = 'New-VDisk' }, @{ Cmdlet = 'Convert-VDisk' } {
        $source = New-PatternImage "$folder/src.raw" 1MB
        if ($Cmdlet -eq 'New-VDisk') { New-VDisk "$folder/c.qcow2" 1MB -ClusterSizeBytes 4294967295 -ErrorVariable err -ErrorAction SilentlyContinue; $err = $err[0] }
        else { $err = { Convert-VDisk $source "$folder/c.qcow2" -ClusterSizeBytes 4294967295 } | Should -Throw -PassThru } # before any input is read
        $err.FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' $Cmdlet)
        $err.Exception.Message | Should -Match 'Cluster size 4294967295 is invalid'
        "$folder/c.qcow2" | Should -Not -Exist
    }

    It 'FileExists for the loser of two conversions to one destination, without -Force' {
        # Zeroes compressed one cluster at a time: seconds of work each, a small output, so the two runs overlap.
        $source = New-PatternImage "$folder/src.raw" 256MB 0, 128MB
        $runs = foreach ($i in 1, 2) {
            $ps = [powershell]::Create()
            $null = $ps.AddCommand('Import-Module').AddParameter('Name', (Get-Module VDisk).Path).AddStatement()
            $null = $ps.AddCommand('Convert-VDisk').AddParameter('Path', $source).AddParameter('DestinationPath', "$folder/out.qcow2").
                AddParameter('SparseThresholdBytes', 0).AddParameter('Compress').AddParameter('ThrottleLimit', 1)
            [pscustomobject]@{ PowerShell = $ps; Handle = $ps.BeginInvoke() }
        }
        foreach ($run in $runs) { $null = $run.PowerShell.EndInvoke($run.Handle) }
        $errors = @($runs | ForEach-Object { $_.PowerShell.Streams.Error })
        $runs | ForEach-Object { $_.PowerShell.Dispose() }

        $errors | Should -HaveCount 1
        $errors[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileExists' 'Convert-VDisk')
        $errors[0].TargetObject | Should -Be "$folder/out.qcow2"
        (Compare-VDisk $source "$folder/out.qcow2").Equal | Should -BeTrue
        @(Get-ChildItem -LiteralPath $folder -Force -Name) | Sort-Object | Should -Be @('out.qcow2', 'src.raw')
    }

    It 'FileNotFound for a dangling symbolic link input (<Cmdlet>)' -ForEach @{ Cmdlet = 'Get-VDisk' }, @{ Cmdlet = 'Get-VDiskChain' }, @{ Cmdlet = 'Convert-VDisk' } {
        $link = "$folder/gone.qcow2"
        $null = New-Item -ItemType SymbolicLink -Path $link -Target "$folder/missing.qcow2"
        $more = if ($Cmdlet -eq 'Convert-VDisk') { @{ DestinationFormat = 'Raw' } } else { @{} }
        & $Cmdlet -LiteralPath $link @more -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' $Cmdlet)
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].TargetObject | Should -Be $link
        $err[0].Exception.Message | Should -Match 'missing\.qcow2'
    }
}
