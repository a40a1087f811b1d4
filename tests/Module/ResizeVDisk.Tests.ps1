# Resize-VDisk: grow and shrink of raw, qcow2 and VDI images (also a VDI grow that moves its block map) and a flat VMDK
# grow, checked with qemu-img (check clean, info size, guest content by checksum), -PassThru, -WhatIf, -Shrink with its
# confirmation, and the error ids of refusals (a full VDI without map room, VMDK shrink, sparse VMDK).

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    # SHA-256 of the first $Bytes bytes of what qemu-img reads as the guest content.
    function Get-GuestSha([string] $Path, [long] $Bytes) {
        $raw = "$Path.guest"
        Invoke-QemuImg @('convert', '-U', '-O', 'raw', $Path, $raw) | Out-Null
        try {
            $stream = [System.IO.File]::OpenRead($raw)
            try {
                $buffer = [byte[]]::new($Bytes)
                $stream.ReadExactly($buffer, 0, $buffer.Length)
                [System.Convert]::ToHexString([System.Security.Cryptography.SHA256]::HashData($buffer))
            } finally { $stream.Dispose() }
        } finally { Remove-Item -LiteralPath $raw }
    }

    function New-FilledImage([string] $Path, [string] $Format, [long] $Size) {
        Invoke-QemuImg @('create', '-q', '-f', $Format, $Path, $Size) | Out-Null
        Invoke-QemuIo $Path @('write -P 0x3c 0 1M', "write -P 0x7e $($Size - 2MB) 1M")
        $Path
    }
}

Describe 'Resize-VDisk grows and shrinks <_> images' -Skip:$SkipQemu -ForEach 'qcow2', 'raw', 'vdi' {
    BeforeAll {
        $folder = New-TestFolder
        $format = $_
        $image = New-FilledImage "$folder/disk.$format" $format 8MB
        $sha = Get-GuestSha $image 8MB
    }

    It 'grows with -PassThru, keeping the data' {
        $info = Resize-VDisk -Path $image -SizeBytes 24MB -PassThru
        $info | Should -BeOfType VDisk.PowerShell.VDiskInfo
        $info.VirtualSize | Should -Be 24MB
        (Get-QemuInfo $image).'virtual-size' | Should -Be 24MB
        Get-GuestSha $image 8MB | Should -Be $sha
        if ($format -ne 'raw') { (Get-QemuCheck $image).corruptions | Should -BeNullOrEmpty }
    }

    It 'refuses a smaller size without -Shrink, changing nothing' {
        Resize-VDisk -Path $image -SizeBytes 4MB -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId InvalidArgument Resize-VDisk)
        $failure[0].TargetObject | Should -Be $image
        (Get-QemuInfo $image).'virtual-size' | Should -Be 24MB
    }

    It 'asks before a shrink (refused where no one can answer, nothing changes); -Force does not ask' {
        $ps = New-ModuleRunspace
        try {
            $null = $ps.AddCommand('Resize-VDisk').AddParameter('LiteralPath', $image).AddParameter('SizeBytes', [uint64]8MB).AddParameter('Shrink')
            $null = $ps.Invoke()
            $ps.Streams.Error[0].FullyQualifiedErrorId | Should -BeLike 'HostFunctionNotImplemented,*ResizeVDiskCommand'
        } finally {
            $ps.Dispose()
        }
        (Get-QemuInfo $image).'virtual-size' | Should -Be 24MB
        $before = Get-GuestSha $image 8MB
        Resize-VDisk -Path $image -SizeBytes 8MB -Shrink -Force
        (Get-QemuInfo $image).'virtual-size' | Should -Be 8MB
        Get-GuestSha $image 8MB | Should -Be $before
    }

    It 'shrinks with -Shrink -Confirm:$false, keeping the data below the new end' {
        $before = Get-GuestSha $image 4MB
        Resize-VDisk -Path $image -SizeBytes 4MB -Shrink -Confirm:$false
        (Get-QemuInfo $image).'virtual-size' | Should -Be 4MB
        Get-GuestSha $image 4MB | Should -Be $before
        if ($format -ne 'raw') {
            $check = Get-QemuCheck $image
            $check.corruptions | Should -BeNullOrEmpty
            $check.leaks | Should -BeNullOrEmpty
        }
    }
}

Describe 'Resize-VDisk options' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
    }

    It 'changes nothing with -WhatIf' {
        $image = New-VDisk -Path "$folder/whatif.qcow2" -SizeBytes 8MB
        Resize-VDisk $image.Path -SizeBytes 1GB -WhatIf
        (Get-QemuInfo $image.Path).'virtual-size' | Should -Be 8MB
    }

    It 'binds VDiskInfo objects from the pipeline and takes sizes as typed' {
        $image = New-VDisk -Path "$folder/pipe.qcow2" -SizeBytes 8MB
        $image | Resize-VDisk -SizeBytes 100GB
        (Get-QemuInfo $image.Path).'virtual-size' | Should -Be 100GB
        (Get-QemuCheck $image.Path).leaks | Should -BeNullOrEmpty
    }

    It 'preallocates the new area of a raw image with -Preallocation Full' {
        $image = New-VDisk -Path "$folder/full.raw" -SizeBytes 4MB
        Resize-VDisk $image.Path -SizeBytes 12MB -Preallocation Full
        (Get-Item $image.Path).Length | Should -Be 12MB
        (Get-QemuInfo $image.Path).'actual-size' | Should -BeGreaterOrEqual 8MB
    }

    It 'refuses -Preallocation with -Shrink before touching any image' {
        { Resize-VDisk "$folder/none.qcow2" -SizeBytes 1MB -Shrink -Preallocation Full -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId (Get-ErrorId InvalidArgument Resize-VDisk)
    }

    It 'grows a VDI image past its block map, moving the map over the first data blocks' {
        $vdi = New-FilledImage "$folder/big.vdi" 'vdi' 8MB
        $sha = Get-GuestSha $vdi 8MB
        $info = Resize-VDisk $vdi -SizeBytes 1GB -PassThru
        $info.VirtualSize | Should -Be 1GB
        (Get-QemuCheck $vdi).corruptions | Should -BeNullOrEmpty
        (Get-QemuInfo $vdi).'virtual-size' | Should -Be 1GB
        Get-GuestSha $vdi 8MB | Should -Be $sha
    }

    It 'refuses to grow a full VDI image whose block map has no room, with UnsupportedFeature' {
        $vdi = "$folder/full.vdi"
        Invoke-QemuImg @('create', '-q', '-f', 'vdi', '-o', 'static=on', $vdi, '128M') | Out-Null
        Resize-VDisk $vdi -SizeBytes 1GB -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId UnsupportedFeature Resize-VDisk)
        $failure[0].Exception.Message | Should -Match 'all 128 blocks allocated'
        (Get-QemuInfo $vdi).'virtual-size' | Should -Be 128MB
    }

    It 'grows a monolithicFlat VMDK image' {
        $vmdk = "$folder/flat.vmdk"
        Invoke-QemuImg @('create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', $vmdk, '8M') | Out-Null
        Invoke-QemuIo $vmdk @('write -P 0x3c 0 1M')
        $sha = Get-GuestSha $vmdk 8MB
        Resize-VDisk $vmdk -SizeBytes 24MB
        (Get-QemuCheck $vmdk).corruptions | Should -BeNullOrEmpty
        (Get-QemuInfo $vmdk).'virtual-size' | Should -Be 24MB
        Get-GuestSha $vmdk 8MB | Should -Be $sha
    }

    It 'refuses to shrink a VMDK image with UnsupportedFeature naming its subformat' {
        $vmdk = "$folder/flat2.vmdk"
        Invoke-QemuImg @('create', '-q', '-f', 'vmdk', '-o', 'subformat=monolithicFlat', $vmdk, '8M') | Out-Null
        Resize-VDisk $vmdk -SizeBytes 4MB -Shrink -Confirm:$false -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId UnsupportedFeature Resize-VDisk)
        $failure[0].Exception.Message | Should -Match 'monolithicFlat'
    }

    It 'refuses a sparse VMDK image with UnsupportedFeature naming its subformat' {
        $vmdk = "$folder/d.vmdk"
        Invoke-QemuImg @('create', '-q', '-f', 'vmdk', $vmdk, '8M') | Out-Null
        Resize-VDisk $vmdk -SizeBytes 16MB -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId UnsupportedFeature Resize-VDisk)
        $failure[0].Exception.Message | Should -Match 'monolithicSparse'
    }

    It 'reports a missing image as FileNotFound and goes on with the next' {
        $image = New-VDisk -Path "$folder/next.qcow2" -SizeBytes 8MB
        Resize-VDisk "$folder/missing.qcow2", $image.Path -SizeBytes 16MB -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId FileNotFound Resize-VDisk)
        (Get-QemuInfo $image.Path).'virtual-size' | Should -Be 16MB
    }

    It 'refuses an image a VM has open (ImageInUse)' {
        $image = New-VDisk -Path "$folder/busy.qcow2" -SizeBytes 8MB
        $holder = Start-QemuHolder $image.Path qcow2
        try {
            Resize-VDisk $image.Path -SizeBytes 16MB -ErrorVariable failure -ErrorAction SilentlyContinue
            $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId ImageInUse Resize-VDisk)
        } finally { Stop-QemuHolder $holder }
        (Get-QemuInfo $image.Path).'virtual-size' | Should -Be 8MB
    }
}
