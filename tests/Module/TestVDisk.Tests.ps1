# Test-VDisk: the check result beside qemu-img check, -Quiet, pipeline input, the table view, -Repair Leaks and All
# (with -WhatIf), the lazy-refcount image left dirty by a crash that write cmdlets refuse until Test-VDisk -Repair All,
# a repair refused on damage it cannot fix safely, and error ids.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    # qemu-img check's JSON report, whatever it prints on stderr about the damage.
    function Get-QemuCheckReport([string] $Path) {
        Assert-QemuImg
        $json = & qemu-img check --output=json $Path 2>$null
        ($json -join "`n") | ConvertFrom-Json
    }

    function Read-BE64([string] $Path, [long] $Offset) {
        $stream = [System.IO.File]::OpenRead($Path)
        try {
            $bytes = [byte[]]::new(8)
            $stream.Position = $Offset
            $null = $stream.Read($bytes, 0, 8)
            [System.Buffers.Binary.BinaryPrimitives]::ReadInt64BigEndian($bytes)
        } finally {
            $stream.Dispose()
        }
    }

    # A 64 MiB qcow2 holding 1 MiB of 0xab written by qemu-io, plus two clusters at the end of the file that are
    # counted but referenced by nothing (leaks).
    function New-LeakyImage([string] $Path) {
        $null = New-VDisk -Path $Path -SizeBytes 64MB
        Invoke-QemuIo $Path @('write -P 0xab 0 1M')
        $block = Read-BE64 $Path (Read-BE64 $Path 48)
        $clusters = (Get-Item -LiteralPath $Path).Length / 64KB
        $stream = [System.IO.File]::Open($Path, 'Open', 'ReadWrite')
        try { $stream.SetLength(($clusters + 2) * 64KB) } finally { $stream.Dispose() }
        Set-FileBytes $Path ($block + 2 * $clusters) ([byte[]](0, 1, 0, 1))
        $Path
    }

    function Get-GuestHash([string] $Path) {
        $raw = "$Path.raw"
        Invoke-QemuImg @('convert', '-U', '-O', 'raw', $Path, $raw) | Out-Null
        try { (Get-FileHash -LiteralPath $raw -Algorithm SHA256).Hash } finally { Remove-Item -LiteralPath $raw }
    }
}

Describe 'Checking images' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $healthy = "$folder/healthy.qcow2"
        $null = New-VDisk -Path $healthy -SizeBytes 64MB
        Invoke-QemuIo $healthy @('write -P 0x11 0 1M', 'write -P 0x22 8M 192k', 'write -c -P 0x33 16M 128k')
        $leaky = New-LeakyImage "$folder/leaky.qcow2"
        $result = Test-VDisk -Path $healthy
    }

    It 'writes a VDiskCheckResult with qemu-img check''s numbers' {
        $qemu = Get-QemuCheckReport $healthy
        $result | Should -BeOfType VDisk.PowerShell.VDiskCheckResult
        $result.Path | Should -Be $healthy
        $result.Format | Should -Be 'Qcow2'
        $result.IsHealthy | Should -BeTrue
        $result.Corruptions | Should -Be 0
        $result.Leaks | Should -Be 0
        $result.ImageEndOffset | Should -Be $qemu.'image-end-offset'
        $result.TotalClusters | Should -Be $qemu.'total-clusters'
        $result.AllocatedClusters | Should -Be $qemu.'allocated-clusters'
        $result.CompressedClusters | Should -Be $qemu.'compressed-clusters'
        $result.FragmentedClusters | Should -Be $qemu.'fragmented-clusters'
        $result.CompressedClusters | Should -Be 2
    }

    It 'counts leaked clusters as qemu-img does' {
        $check = Test-VDisk $leaky
        $check.Leaks | Should -Be (Get-QemuCheckReport $leaky).leaks
        $check.Leaks | Should -Be 2
        $check.IsHealthy | Should -BeFalse
    }

    It 'answers only True or False with -Quiet' {
        Test-VDisk $healthy -Quiet | Should -BeExactly $true
        Test-VDisk $leaky -Quiet | Should -BeExactly $false
    }

    It 'takes images from the pipeline, by value and as Get-ChildItem items' {
        @(Get-ChildItem -LiteralPath $folder -Filter *.qcow2 | Test-VDisk).Count | Should -Be 2
        @($healthy, $leaky | Test-VDisk -Quiet) | Should -Be @($true, $false)
        @(Test-VDisk -Path "$folder/*.qcow2").Count | Should -Be 2
    }

    It 'shows a table with health, counts and space in use' {
        $table = $result | Format-Table | Out-String -Width 400
        $table | Should -Match 'IsHealthy\s+Corruptions\s+Leaks'
        $table | Should -Match ([regex]::Escape($healthy))
    }

    It 'checks VDI and VMDK block maps too' {
        $vdi = (New-VDisk -Path "$folder/d.vdi" -SizeBytes 8MB).Path
        Invoke-QemuIo $vdi @('write -P 1 0 2M')
        (Test-VDisk $vdi).IsHealthy | Should -BeTrue
        $vmdk = (New-VDisk -Path "$folder/v.vmdk" -SizeBytes 8MB).Path
        (Test-VDisk $vmdk -Quiet) | Should -BeTrue
    }

    It 'reports a missing image as FileNotFound and a raw one as UnsupportedFeature' {
        $null = Test-VDisk "$folder/nope.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Test-VDisk')
        $raw = (New-VDisk -Path "$folder/r.raw" -SizeBytes 1MB).Path
        $null = Test-VDisk $raw -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'UnsupportedFeature' 'Test-VDisk')
        $err[0].TargetObject | Should -Be $raw
    }
}

Describe 'Repairing images' -Skip:$SkipQemu {
    BeforeEach {
        $folder = New-TestFolder
    }

    It 'gives back leaked clusters with -Repair Leaks' {
        $leaky = New-LeakyImage "$folder/leaky.qcow2"
        $guest = Get-GuestHash $leaky
        $repaired = Test-VDisk $leaky -Repair Leaks -Confirm:$false
        $repaired.LeaksFixed | Should -Be 2
        $repaired.IsHealthy | Should -BeTrue
        $qemu = Get-QemuCheckReport $leaky
        $qemu.leaks | Should -BeNullOrEmpty
        $qemu.corruptions | Should -BeNullOrEmpty
        Get-GuestHash $leaky | Should -Be $guest
    }

    It 'changes nothing with -WhatIf' {
        $leaky = New-LeakyImage "$folder/leaky.qcow2"
        $before = (Get-FileHash -LiteralPath $leaky).Hash
        $checked = Test-VDisk $leaky -Repair All -WhatIf
        $checked.Leaks | Should -Be 2
        $checked.LeaksFixed | Should -Be 0
        (Get-FileHash -LiteralPath $leaky).Hash | Should -Be $before
    }

    It 'repairs a lazy-refcount image left dirty by a crash, which write cmdlets then accept' {
        $lazy = "$folder/lazy.qcow2"
        Invoke-QemuImg @('create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', $lazy, '64M') | Out-Null
        & qemu-io -t writeback -c 'write -P 0xab 0 1M' -c flush -c 'write -P 0xcd 8M 64k' -c abort $lazy 2>&1 | Out-Null
        $guest = Get-GuestHash $lazy
        $before = Test-VDisk $lazy
        $before.Dirty | Should -BeTrue
        $before.Corruptions | Should -Be (Get-QemuCheckReport $lazy).corruptions

        $null = Checkpoint-VDisk $lazy -Name refused -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'CorruptImage' 'Checkpoint-VDisk')
        "$($err[0])" | Should -BeLike '*Test-VDisk -Repair All*'

        $repaired = Test-VDisk $lazy -Repair All -Confirm:$false
        $repaired.IsHealthy | Should -BeTrue
        $repaired.Dirty | Should -BeFalse
        $repaired.CorruptionsFixed | Should -BeGreaterThan 0
        (Get-QemuInfo $lazy).'format-specific'.data.corrupt | Should -BeFalse
        Get-GuestHash $lazy | Should -Be $guest
        (Checkpoint-VDisk $lazy -Name after-repair).Name | Should -Be 'after-repair'
        $qemu = Get-QemuCheckReport $lazy
        $qemu.corruptions | Should -BeNullOrEmpty
        $qemu.leaks | Should -BeNullOrEmpty
    }

    It 'refuses to repair an L2 entry past the end of the file, and changes nothing' {
        $broken = "$folder/broken.qcow2"
        $null = New-VDisk -Path $broken -SizeBytes 64MB
        Invoke-QemuIo $broken @('write -P 0x11 0 64k')
        $l2 = (Read-BE64 $broken (Read-BE64 $broken 40)) -band 0x00fffffffffffe00
        Set-FileBytes $broken $l2 ([byte[]](0x80, 0, 1, 0, 0, 0, 0, 0)) # COPIED, 1 TiB
        $before = (Get-FileHash -LiteralPath $broken).Hash
        $result = Test-VDisk $broken -Repair All -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageNotRepairable' 'Test-VDisk')
        $err[0].TargetObject | Should -Be $broken
        "$($err[0])" | Should -BeLike '*beyond the end of the file*'
        $result.RepairRefused | Should -BeTrue
        $result.Corruptions | Should -Be (Get-QemuCheckReport $broken).corruptions
        (Get-FileHash -LiteralPath $broken).Hash | Should -Be $before
    }

    It 'refuses an image a running VM holds, as qemu-img check does' {
        $held = (New-VDisk -Path "$folder/held.qcow2" -SizeBytes 8MB).Path
        $holder = Start-QemuHolder $held 'qcow2'
        try {
            $null = Test-VDisk $held -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageInUse' 'Test-VDisk')
            $null = Test-VDisk $held -Repair All -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageInUse' 'Test-VDisk')
        } finally {
            Stop-QemuHolder $holder
        }
    }

    It 'repairs qcow2 images only' {
        $vdi = (New-VDisk -Path "$folder/d.vdi" -SizeBytes 8MB).Path
        $null = Test-VDisk $vdi -Repair All -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'UnsupportedFeature' 'Test-VDisk')
    }
}
