# Checkpoint-VDisk, Get-VDiskSnapshot, Restore-VDiskSnapshot and Remove-VDiskSnapshot: objects, pipeline binding
# by Path and Id, -WhatIf, error ids, and agreement with qemu-img snapshot -l / -a and qemu-img check.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    # A 4 MiB qcow2 whose first MiB holds $Fill bytes, written by qemu-io.
    function New-FilledImage([string] $Path, [int] $Fill) {
        $null = New-VDisk -Path $Path -SizeBytes 4MB
        Invoke-QemuIo $Path @("write -P $Fill 0 1M")
        $Path
    }

    function Get-Sha([string] $Path) {
        $raw = "$Path.raw"
        Invoke-QemuImg @('convert', '-O', 'raw', $Path, $raw) | Out-Null
        try { (Get-FileHash -LiteralPath $raw -Algorithm SHA256).Hash } finally { Remove-Item -LiteralPath $raw }
    }
}

Describe 'Taking and listing snapshots' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $image = New-FilledImage "$folder/vm.qcow2" 0x11
        $first = Checkpoint-VDisk -Path $image -Name before-upgrade
        Invoke-QemuIo $image @('write -P 0x22 0 512k')
        $second = Checkpoint-VDisk -Path $image -Name nightly-1
        $listed = Get-VDiskSnapshot -Path $image
    }

    It 'writes a VDiskSnapshot for each snapshot taken' {
        $first | Should -BeOfType VDisk.PowerShell.VDiskSnapshot
        $first.Path | Should -Be $image
        $first.Id | Should -Be '1'
        $first.Name | Should -Be 'before-upgrade'
        $first.DiskSize | Should -Be 4MB
        $first.CreationTime | Should -BeGreaterThan (Get-Date).AddMinutes(-5)
        $first.CreationTime.Kind | Should -Be 'Local'
        $second.Id | Should -Be '2'
    }

    It 'lists them as qemu-img snapshot -l does' {
        $qemu = (Get-QemuInfo $image).snapshots
        $listed.Id | Should -Be @($qemu.id)
        $listed.Name | Should -Be @($qemu.name)
        $listed.Name | Should -Be @('before-upgrade', 'nightly-1')
    }

    It 'keeps the image clean for qemu-img check' {
        $check = Get-QemuCheck $image
        $check.corruptions | Should -BeNullOrEmpty
        $check.leaks | Should -BeNullOrEmpty
    }

    It 'filters by -Name with wildcards and by -Id' {
        (Get-VDiskSnapshot $image -Name 'nightly-*').Name | Should -Be 'nightly-1'
        (Get-VDiskSnapshot $image -Id 1).Name | Should -Be 'before-upgrade'
    }

    It 'reports a missing name or id as SnapshotNotFound about the image' {
        $null = Get-VDiskSnapshot $image -Name nope -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'SnapshotNotFound' 'Get-VDiskSnapshot')
        $err[0].TargetObject | Should -Be $image
        "$($err[0])" | Should -BeLike "*before-upgrade*"
    }

    It 'names a default snapshot after the date and time' {
        $other = New-FilledImage "$folder/other.qcow2" 0x33
        (Checkpoint-VDisk $other).Name | Should -Match '^vdisk-\d{8}-\d{6}$'
    }

    It 'changes nothing with -WhatIf' {
        $before = (Get-FileHash -LiteralPath $image).Hash
        Checkpoint-VDisk $image -Name ghost -WhatIf
        (Get-FileHash -LiteralPath $image).Hash | Should -Be $before
    }

    It 'completes snapshot names for -Name from the image in -Path' {
        $line = "Get-VDiskSnapshot -Path '$image' -Name nig"
        $completion = TabExpansion2 -inputScript $line -cursorColumn $line.Length
        $completion.CompletionMatches.CompletionText | Should -Be @('nightly-1')
    }
}

Describe 'Restoring and removing snapshots' -Skip:$SkipQemu {
    BeforeEach {
        $folder = New-TestFolder
        $image = New-FilledImage "$folder/vm.qcow2" 0x11
        $before = Get-Sha $image
        $null = Checkpoint-VDisk $image -Name before-upgrade
        Invoke-QemuIo $image @('write -P 0x44 1M 2M')
        $after = Get-Sha $image
    }

    It 'restores the content the snapshot recorded, as qemu-img snapshot -a would' {
        Restore-VDiskSnapshot $image -Name before-upgrade -Confirm:$false
        Get-Sha $image | Should -Be $before
        (Get-QemuCheck $image).corruptions | Should -BeNullOrEmpty
    }

    It 'restores what qemu-img snapshot took' {
        Invoke-QemuImg @('snapshot', '-c', 'by-qemu', $image) | Out-Null
        Invoke-QemuIo $image @('write -P 0x55 0 4M')
        Get-VDiskSnapshot $image -Name by-qemu | Restore-VDiskSnapshot -Confirm:$false
        Get-Sha $image | Should -Be $after
    }

    It 'removes piped snapshots by Path and Id, and qemu-img no longer lists them' {
        Get-VDiskSnapshot $image | Remove-VDiskSnapshot -Confirm:$false
        Get-VDiskSnapshot $image | Should -BeNullOrEmpty
        (Get-QemuInfo $image).snapshots | Should -BeNullOrEmpty
        $check = Get-QemuCheck $image
        $check.corruptions | Should -BeNullOrEmpty
        $check.leaks | Should -BeNullOrEmpty
        Get-Sha $image | Should -Be $after
    }

    It 'changes nothing with -WhatIf' {
        $hash = (Get-FileHash -LiteralPath $image).Hash
        Restore-VDiskSnapshot $image -Name before-upgrade -WhatIf
        Remove-VDiskSnapshot $image -Name before-upgrade -WhatIf
        (Get-FileHash -LiteralPath $image).Hash | Should -Be $hash
    }

    It 'refuses an ambiguous name for Restore with AmbiguousSnapshot' {
        $null = Checkpoint-VDisk $image -Name before-upgrade
        Restore-VDiskSnapshot $image -Name before-upgrade -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'AmbiguousSnapshot' 'Restore-VDiskSnapshot')
        Get-Sha $image | Should -Be $after
    }

    It 'writes the snapshots it removed with -PassThru' {
        $removed = Remove-VDiskSnapshot $image -Name 'before-*' -PassThru -Confirm:$false
        $removed.Name | Should -Be 'before-upgrade'
    }
}

Describe 'Snapshots across many images' -Skip:$SkipQemu {
    It 'one image that fails does not stop the others' {
        $folder = New-TestFolder
        $a = New-FilledImage "$folder/a.qcow2" 1
        $null = New-VDisk -Path "$folder/b.img" -SizeBytes 1MB
        $c = New-FilledImage "$folder/c.qcow2" 3
        $taken = Get-ChildItem -LiteralPath $folder | Checkpoint-VDisk -Name nightly -ErrorVariable err -ErrorAction SilentlyContinue
        $taken.Path | Should -Be @($a, $c)
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'UnsupportedFeature' 'Checkpoint-VDisk')
        $err[0].TargetObject | Should -Be "$folder/b.img"
        Get-VDiskSnapshot "$folder/*.qcow2" -Name nightly | Remove-VDiskSnapshot -Confirm:$false
        Get-VDiskSnapshot "$folder/*.qcow2" | Should -BeNullOrEmpty
    }

    It 'refuses an image a VM has open (ImageInUse) and leaves it as it was' {
        $folder = New-TestFolder
        $image = New-FilledImage "$folder/busy.qcow2" 7
        $holder = Start-QemuHolder $image 'qcow2'
        try {
            $hash = (Get-FileHash -LiteralPath $image).Hash
            Checkpoint-VDisk $image -Name x -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageInUse' 'Checkpoint-VDisk')
            (Get-FileHash -LiteralPath $image).Hash | Should -Be $hash
        } finally {
            Stop-QemuHolder $holder
        }
    }
}

Describe 'External snapshots' -Skip:$SkipQemu {
    It 'creates an overlay over the image, stored relative to it, that reads as the image' {
        $folder = New-TestFolder
        $image = New-FilledImage "$folder/vm.qcow2" 0x66
        $null = New-Item -ItemType Directory -Path "$folder/snaps"
        $overlay = Checkpoint-VDisk $image -External -OverlayPath "$folder/snaps/vm-1.qcow2"
        $overlay | Should -BeOfType VDisk.PowerShell.VDiskInfo
        $overlay.BackingPath | Should -Be '../vm.qcow2'
        (Get-QemuInfo "$folder/snaps/vm-1.qcow2").'backing-filename-format' | Should -Be 'qcow2'
        Get-Sha "$folder/snaps/vm-1.qcow2" | Should -Be (Get-Sha $image)
    }

    It 'needs -OverlayPath with -External (InvalidArgument)' {
        { Checkpoint-VDisk (New-TestFolder) -External -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidArgument,VDisk.PowerShell.Commands.CheckpointVDiskCommand'
    }
}
