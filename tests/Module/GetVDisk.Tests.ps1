# Get-VDisk: -Path/-LiteralPath resolution, pipeline binding (Get-ChildItem, strings, objects), folders,
# the VDiskInfo it returns (with the persistent bitmaps qemu-img info lists), non-terminating errors with stable ids,
# and the broken-chain warning.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    $folder = Join-Path $TestDrive 'images'
    $null = New-Item -ItemType Directory -Path $folder, "$folder/nested", "$folder/empty.qcow2.d"
    $null = New-VDisk -Path "$folder/base.qcow2" -SizeBytes 64MB -ClusterSizeBytes 4096
    $null = New-VDisk -Path "$folder/overlay.qcow2" -BackingPath "$folder/base.qcow2"
    $null = New-VDisk -Path "$folder/nested/top.qcow2" -BackingPath "$folder/overlay.qcow2"
    $null = New-VDisk -Path "$folder/disk.img" -SizeBytes 2MB
    $null = New-VDisk -Path "$folder/disk[1].qcow2" -SizeBytes 1MB
    Set-Content -LiteralPath "$folder/notes.txt" -Value 'a text file is a raw image'
}

Describe 'Get-VDisk path resolution' {
    AfterEach { Pop-Location -ErrorAction Ignore }

    It 'expands wildcards and skips the folders they match' {
        $result = Get-VDisk -Path "$folder/*" -ErrorVariable err
        $err | Should -BeNullOrEmpty
        ($result.Path | Sort-Object) | Should -Be (@('base.qcow2', 'disk.img', 'disk[1].qcow2', 'notes.txt', 'overlay.qcow2') | ForEach-Object { Join-Path $folder $_ } | Sort-Object)
    }

    It 'gives nothing, and no error, for a wildcard that matches nothing' {
        Get-VDisk -Path "$folder/*.vmdk" -ErrorVariable err | Should -BeNullOrEmpty
        $err | Should -BeNullOrEmpty
    }

    It 'resolves relative paths against the PowerShell location' {
        Push-Location -LiteralPath "$folder/nested"
        (Get-VDisk 'top.qcow2').Path | Should -Be "$folder/nested/top.qcow2"
        (Get-VDisk '../base.qcow2').Path | Should -Be "$folder/base.qcow2"
    }

    It 'resolves PowerShell drive paths' {
        (Get-VDisk -Path 'TestDrive:/images/base.qcow2').Path | Should -Be "$folder/base.qcow2"
    }

    It 'takes several paths' {
        (Get-VDisk -Path "$folder/base.qcow2", "$folder/disk.img").Format | Should -Be @('Qcow2', 'Raw')
    }

    It 'takes brackets literally with -LiteralPath and its alias -PSPath' {
        (Get-VDisk -LiteralPath "$folder/disk[1].qcow2").VirtualSize | Should -Be 1MB
        (Get-VDisk -PSPath "$folder/disk[1].qcow2").VirtualSize | Should -Be 1MB
    }

    It 'treats brackets in -Path as a wildcard' {
        # disk[1].qcow2 as a pattern matches "disk1.qcow2", which does not exist.
        Get-VDisk -Path "$folder/disk[1].qcow2" -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }
}

Describe 'Get-VDisk pipeline input' {
    It 'reads Get-ChildItem output, skipping folders quietly' {
        $result = Get-ChildItem -LiteralPath $folder -Recurse | Get-VDisk -ErrorVariable err -WarningAction SilentlyContinue
        $err | Should -BeNullOrEmpty
        $result.Count | Should -Be 6
        $result.Path | Should -Contain "$folder/disk[1].qcow2"
        $result.Path | Should -Contain "$folder/nested/top.qcow2"
    }

    It 'skips a folder piped from Get-Item' {
        Get-Item -LiteralPath "$folder/nested" | Get-VDisk -ErrorVariable err | Should -BeNullOrEmpty
        $err | Should -BeNullOrEmpty
    }

    It 'binds piped strings to -Path' {
        ("$folder/base.qcow2", "$folder/disk.img" | Get-VDisk).Count | Should -Be 2
    }

    It 'binds objects with a Path property by name' {
        ([pscustomobject]@{ Path = "$folder/base.qcow2" } | Get-VDisk).Format | Should -Be 'Qcow2'
    }

    It 'binds its own output (VDiskInfo.Path) back to itself' {
        (Get-VDisk "$folder/base.qcow2" | Get-VDisk).VirtualSize | Should -Be 64MB
    }

    It 'goes on after an image fails: one error, the other images returned' {
        $result = "$folder/base.qcow2", "$folder/missing.qcow2", "$folder/disk.img" | Get-VDisk -ErrorVariable err -ErrorAction SilentlyContinue
        $result.Path | Should -Be @("$folder/base.qcow2", "$folder/disk.img")
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Get-VDisk')
    }
}

Describe 'Get-VDisk output' {
    It 'describes a qcow2 overlay' {
        $info = Get-VDisk -LiteralPath "$folder/overlay.qcow2"
        $info | Should -BeOfType VDisk.PowerShell.VDiskInfo
        $info.Format | Should -Be 'Qcow2'
        $info.VirtualSize | Should -Be 64MB
        $info.ClusterSize | Should -Be 65536
        $info.BackingPath | Should -Be "$folder/base.qcow2" # typed absolute, stored absolute
        $info.BackingFullPath | Should -Be "$folder/base.qcow2"
        $info.BackingFormat | Should -Be 'Qcow2'
        $info.ChainDepth | Should -Be 1
        $info.FileLength | Should -Be (Get-Item -LiteralPath "$folder/overlay.qcow2").Length
        $info.FileSize | Should -BeGreaterThan 0
        $info.UnknownFeatures.Count | Should -Be 0
        $info.Subformat | Should -BeNullOrEmpty
    }

    It 'counts the chain depth of a three-layer chain' {
        (Get-VDisk -LiteralPath "$folder/nested/top.qcow2").ChainDepth | Should -Be 2
    }

    It 'reads a file without a known magic as raw, its size the file length rounded up to whole sectors (as qemu-img)' {
        $info = Get-VDisk -LiteralPath "$folder/notes.txt"
        $info.Format | Should -Be 'Raw'
        $length = (Get-Item -LiteralPath "$folder/notes.txt").Length
        $info.VirtualSize | Should -Be ([math]::Ceiling($length / 512) * 512)
        $info.FileLength | Should -Be $length
        $info.ClusterSize | Should -Not -Be 65536
        $info.Compat | Should -BeNullOrEmpty
        $info.RefcountBits | Should -BeNullOrEmpty
    }

    It 'reports FileSize as allocated bytes and FileLength as the apparent length of a sparse file' {
        $info = Get-VDisk -LiteralPath "$folder/disk.img"
        $info.FileLength | Should -Be 2MB
        $info.FileSize | Should -BeLessThan 2MB
    }
}

Describe 'Get-VDisk bitmaps' -Skip:$SkipQemu {
    It 'lists the bitmaps qemu-img info lists, and shows one VDisk wrote through as in use' {
        $image = Join-Path $TestDrive 'bitmaps.qcow2'
        $null = New-VDisk -Path $image -SizeBytes 8MB
        $null = Invoke-QemuImg @('bitmap', '--add', '-g', '4096', $image, 'nightly')
        $null = Invoke-QemuImg @('bitmap', '--add', '--disable', $image, 'weekly')
        $info = Get-VDisk -LiteralPath $image
        $info.Bitmaps.Name | Should -Be @('nightly', 'weekly')
        $info.Bitmaps.Granularity | Should -Be @(4096, 65536)
        $info.Bitmaps.Enabled | Should -Be @($true, $false)
        $info.Bitmaps.Consistent | Should -Be @($true, $true)
        $qemu = (Get-QemuInfo $image).'format-specific'.data.bitmaps
        $info.Bitmaps.Name | Should -Be @($qemu.name)
        $info.Bitmaps.Granularity | Should -Be @($qemu.granularity)

        Resize-VDisk -LiteralPath $image -SizeBytes 16MB
        $after = (Get-VDisk -LiteralPath $image).Bitmaps
        $after.InUse | Should -Be @($true, $true)
        $after.Consistent | Should -Be @($false, $false)
        $after[0].Problem | Should -Match 'in use'
        (Get-QemuInfo $image).'format-specific'.data.bitmaps[0].flags | Should -Contain 'in-use'
        (Get-QemuCheck $image).leaks | Should -BeNullOrEmpty
    }

    It 'shows no bitmaps for an image without any' {
        (Get-VDisk -LiteralPath "$folder/base.qcow2").Bitmaps.Count | Should -Be 0
    }
}

Describe 'Get-VDisk errors' {
    BeforeAll {
        $bad = Join-Path $TestDrive 'bad'
        $null = New-Item -ItemType Directory -Path $bad
    }

    It 'FileNotFound for a missing file, with its full path as target' {
        Get-VDisk -Path "$bad/none.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Get-VDisk')
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].TargetObject | Should -Be "$bad/none.qcow2"
    }

    It 'FileNotFound for a missing file given with -LiteralPath' {
        Get-VDisk -LiteralPath "$bad/none[1].qcow2" -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Get-VDisk')
        $err[0].TargetObject | Should -Be "$bad/none[1].qcow2"
    }

    It 'NotAnImage for a folder named explicitly (-Path and -LiteralPath)' {
        Get-VDisk -Path "$folder/nested" -ErrorVariable err -ErrorAction SilentlyContinue
        Get-VDisk -LiteralPath "$folder/nested" -ErrorVariable +err -ErrorAction SilentlyContinue
        $err.Count | Should -Be 2
        $err.FullyQualifiedErrorId | Should -Be (@(Get-ErrorId 'NotAnImage' 'Get-VDisk') * 2)
        $err[0].CategoryInfo.Category | Should -Be 'InvalidData'
        $err[0].TargetObject | Should -Be "$folder/nested"
    }

    It 'CorruptImage for a qcow2 header with cluster_bits 30' {
        $path = "$bad/corrupt.qcow2"
        $null = New-VDisk -Path $path -SizeBytes 1MB
        Set-FileBytes $path 20 ([byte[]](0, 0, 0, 30)) # cluster_bits, big-endian u32 at offset 20
        Get-VDisk -LiteralPath $path -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'CorruptImage' 'Get-VDisk')
        $err[0].CategoryInfo.Category | Should -Be 'InvalidData'
        $err[0].TargetObject | Should -Be $path
        $err[0].Exception.Message | Should -Match 'cluster_bits'
    }

    It 'UnsupportedFeature for qcow2 version 4' {
        $path = "$bad/v4.qcow2"
        $null = New-VDisk -Path $path -SizeBytes 1MB
        Set-FileBytes $path 4 ([byte[]](0, 0, 0, 4)) # version, big-endian u32 at offset 4
        Get-VDisk -LiteralPath $path -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'UnsupportedFeature' 'Get-VDisk')
        $err[0].CategoryInfo.Category | Should -Be 'NotImplemented'
        $err[0].TargetObject | Should -Be $path
    }

    It 'NotFileSystemPath for <_>' -ForEach 'Env:/PATH', 'Variable:/PSHOME' {
        Get-VDisk -Path $_ -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'NotFileSystemPath' 'Get-VDisk')
    }

    It 'stops the pipeline with -ErrorAction Stop' {
        { Get-VDisk -Path "$bad/none.qcow2" -ErrorAction Stop } | Should -Throw -ErrorId (Get-ErrorId 'FileNotFound' 'Get-VDisk')
    }

    It 'warns, and still describes the image, when a backing file is missing' {
        $null = New-VDisk -Path "$bad/gone.qcow2" -SizeBytes 1MB
        $null = New-VDisk -Path "$bad/orphan.qcow2" -BackingPath "$bad/gone.qcow2"
        Remove-Item -LiteralPath "$bad/gone.qcow2"
        $info = Get-VDisk -LiteralPath "$bad/orphan.qcow2" -WarningVariable warned -WarningAction SilentlyContinue -ErrorVariable err
        $err | Should -BeNullOrEmpty
        $info.BackingPath | Should -Be "$bad/gone.qcow2"
        $info.ChainDepth | Should -Be 0
        $warned.Count | Should -Be 1
        $warned[0].Message | Should -Match 'gone\.qcow2'
    }

    It 'does not warn about a healthy chain' {
        $null = Get-VDisk -LiteralPath "$folder/nested/top.qcow2" -WarningVariable warned
        $warned | Should -BeNullOrEmpty
    }
}
