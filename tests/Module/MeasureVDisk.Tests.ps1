# Measure-VDisk: VDiskMeasurement objects with qemu-img measure's numbers for images and for a size alone, the qcow2
# options, the table view, and the errors for options that do not fit.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    function Get-QemuMeasure([string[]] $Arguments) {
        (Invoke-QemuImg (@('measure', '--output=json') + $Arguments)) -join "`n" | ConvertFrom-Json
    }
}

Describe 'Measure-VDisk' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $raw = "$folder/vm.raw"
        Invoke-QemuImg @('create', '-q', '-f', 'raw', $raw, '32M') | Out-Null
        Invoke-QemuIo $raw @('write -P 0x11 1M 3M', 'write -P 0x12 20M 64k')
        $qcow2 = "$folder/vm.qcow2"
        Invoke-QemuImg @('convert', '-O', 'qcow2', $raw, $qcow2) | Out-Null
    }

    It 'gives qemu-img measure''s numbers for a raw image converted to qcow2' {
        $ours = Measure-VDisk $raw -DestinationFormat Qcow2
        $ours | Should -BeOfType VDisk.PowerShell.VDiskMeasurement
        $qemu = Get-QemuMeasure @('-O', 'qcow2', $raw)
        $ours.RequiredBytes | Should -Be $qemu.required
        $ours.FullyAllocatedBytes | Should -Be $qemu.'fully-allocated'
        $ours.BitmapsBytes | Should -BeNullOrEmpty
        $ours.Path | Should -Be $raw
        $ours.VirtualSize | Should -Be 32MB
    }

    It 'gives bitmaps for a qcow2 source, and takes the qcow2 options' {
        $ours = Measure-VDisk $qcow2 -DestinationFormat Qcow2 -ClusterSizeBytes 4096 -RefcountBits 8
        $qemu = Get-QemuMeasure @('-O', 'qcow2', '-o', 'cluster_size=4096,refcount_bits=8', $qcow2)
        $ours.RequiredBytes | Should -Be $qemu.required
        $ours.FullyAllocatedBytes | Should -Be $qemu.'fully-allocated'
        $ours.BitmapsBytes | Should -Be $qemu.bitmaps
        $ours.BitmapsBytes | Should -Be 0
    }

    It 'measures to raw by default, as qemu-img does' {
        $ours = Get-ChildItem $folder -Filter '*.qcow2' | Measure-VDisk
        $ours.DestinationFormat | Should -Be 'Raw'
        $ours.RequiredBytes | Should -Be (Get-QemuMeasure @($qcow2)).required
    }

    It 'measures a size alone (-SizeBytes 20GB)' {
        $ours = Measure-VDisk -SizeBytes 20GB -DestinationFormat Qcow2 -Preallocation Full
        $qemu = Get-QemuMeasure @('--size', '20G', '-O', 'qcow2', '-o', 'preallocation=full')
        $ours.RequiredBytes | Should -Be $qemu.required
        $ours.FullyAllocatedBytes | Should -Be $qemu.'fully-allocated'
        $ours.Path | Should -BeNullOrEmpty
        $text = $ours | Format-Table | Out-String -Width 200
        $text | Should -Match 'Qcow2'
        $text | Should -Match '20 GiB'
    }

    It 'refuses qcow2 options for a raw destination' {
        { Measure-VDisk -SizeBytes 1GB -ClusterSizeBytes 4096 -ErrorAction Stop } | Should -Throw -ErrorId (Get-ErrorId InvalidArgument Measure-VDisk)
    }

    It 'refuses a VDI destination as UnsupportedFeature, like qemu-img' {
        Measure-VDisk $raw -DestinationFormat Vdi -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId UnsupportedFeature Measure-VDisk)
        $failure[0].TargetObject | Should -Be $raw
    }
}
