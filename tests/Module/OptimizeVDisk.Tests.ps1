# Optimize-VDisk: the space won back as an object, quick and full mode beside qemu-img (guest content by checksum,
# qemu-img check clean), -WhatIf, the table view, and the refusals (dirty image, -Full with snapshots, not qcow2).

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    # A 64 MiB qcow2 whose guest wrote 1 MiB at 0 and 16 MiB at 8 MiB, then zeroed those 16 MiB (data clusters of zeroes).
    function New-ZeroedImage([string] $Path) {
        $null = New-VDisk -Path $Path -SizeBytes 64MB
        Invoke-QemuIo $Path @('write -P 0x11 0 1M', 'write -P 0x22 8M 16M', 'write -P 0x33 40M 1M', 'write -P 0 8M 16M')
        $Path
    }

    function Get-GuestHash([string] $Path) {
        $raw = "$Path.raw"
        Invoke-QemuImg @('convert', '-U', '-O', 'raw', $Path, $raw) | Out-Null
        try { (Get-FileHash -LiteralPath $raw -Algorithm SHA256).Hash } finally { Remove-Item -LiteralPath $raw }
    }
}

Describe 'Optimize-VDisk' -Skip:$SkipQemu {
    BeforeEach {
        $folder = New-TestFolder
    }

    It 'gives back zeroed space in place, guest unchanged, <_>' -ForEach @('quick', 'full') {
        $image = New-ZeroedImage "$folder/vm.qcow2"
        $guest = Get-GuestHash $image
        $result = if ($_ -eq 'full') { Optimize-VDisk $image -Full } else { Optimize-VDisk $image }
        $result | Should -BeOfType VDisk.PowerShell.VDiskOptimizeResult
        $result.Path | Should -Be $image
        $result.Full | Should -Be ($_ -eq 'full')
        # The zeroed clusters lie between data, so they become a hole; ext4 may spend a block of its extent tree on it.
        $result.BytesWonBack | Should -BeGreaterOrEqual (16MB - 64KB)
        $result.AllocatedAfter | Should -Be ($result.AllocatedBefore - $result.BytesWonBack)
        Get-GuestHash $image | Should -Be $guest
        $check = Get-QemuCheck $image
        $check.corruptions | Should -BeNullOrEmpty
        $check.leaks | Should -BeNullOrEmpty
        (Test-VDisk $image).IsHealthy | Should -BeTrue
    }

    It 'counts the zeroed clusters in quick mode' {
        $result = Optimize-VDisk (New-ZeroedImage "$folder/vm.qcow2")
        $result.ZeroedClusters | Should -Be (16MB / 64KB)
    }

    It 'changes nothing with -WhatIf' {
        $image = New-ZeroedImage "$folder/vm.qcow2"
        $before = (Get-FileHash -LiteralPath $image).Hash
        Optimize-VDisk $image -WhatIf | Should -BeNullOrEmpty
        (Get-FileHash -LiteralPath $image).Hash | Should -Be $before
    }

    It 'shows a table with the space won back' {
        $table = Optimize-VDisk (New-ZeroedImage "$folder/vm.qcow2") | Format-Table | Out-String -Width 400
        $table | Should -Match 'WonBack\s+Before\s+After\s+Mode'
        $table | Should -Match '16 MiB|1[6-9](\.\d+)? MiB'
    }

    It 'refuses -Full for an image with internal snapshots, and keeps them in quick mode' {
        $image = New-ZeroedImage "$folder/vm.qcow2"
        $null = Checkpoint-VDisk $image -Name keep
        $null = Optimize-VDisk $image -Full -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'UnsupportedFeature' 'Optimize-VDisk')
        "$($err[0])" | Should -BeLike '*internal snapshot*'
        $null = Optimize-VDisk $image
        (Get-VDiskSnapshot $image).Name | Should -Be 'keep'
    }

    It 'refuses a dirty image until Test-VDisk -Repair All' {
        $lazy = "$folder/lazy.qcow2"
        Invoke-QemuImg @('create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', $lazy, '64M') | Out-Null
        & qemu-io -t writeback -c 'write -P 0xab 0 1M' -c flush -c 'write -P 0 8M 1M' -c abort $lazy 2>&1 | Out-Null
        $null = Optimize-VDisk $lazy -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'CorruptImage' 'Optimize-VDisk')
        "$($err[0])" | Should -BeLike '*Test-VDisk -Repair All*'
        $null = Test-VDisk $lazy -Repair All -Confirm:$false
        (Optimize-VDisk $lazy).Path | Should -Be $lazy
    }

    It 'optimizes qcow2 images only' {
        $raw = (New-VDisk -Path "$folder/r.raw" -SizeBytes 1MB).Path
        $null = Optimize-VDisk $raw -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'UnsupportedFeature' 'Optimize-VDisk')
        $err[0].TargetObject | Should -Be $raw
    }
}
