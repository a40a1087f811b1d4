# Interop with qemu-img, the reference: every New-VDisk option combination (subformats included) must pass `qemu-img check`
# (no errors, no leaks) and `qemu-img info` must agree with Get-VDisk; images qemu-img creates must be
# described by Get-VDisk as qemu-img describes them. Outside CI these tests skip when qemu-img is missing.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')

    # Layout options: every cluster size x refcount width x preallocation mode (qcow2 compat 1.1).
    $created = [System.Collections.Generic.List[hashtable]]::new()
    foreach ($cluster in 512, 4096, 65536, 2MB) {
        foreach ($bits in 1, 2, 4, 8, 16, 32, 64) {
            foreach ($mode in 'Off', 'Metadata', 'Falloc', 'Full') {
                $created.Add(@{ Name = "qcow2 cluster $cluster, refcount $bits, $mode"; Options = @{ ClusterSizeBytes = $cluster; RefcountBits = $bits; Preallocation = $mode }; Backing = 'None' })
            }
        }
    }
    # Feature options: every compat/lazy/compression set x backing (none, relative, absolute, with format) x
    # preallocation x a small and the default cluster size.
    $features = @(
        @{ Label = 'compat 0.10'; Options = @{ Compat = '0.10' } }
        @{ Label = 'compat 1.1'; Options = @{ Compat = '1.1' } }
        @{ Label = 'lazy refcounts'; Options = @{ LazyRefcounts = $true } }
        @{ Label = 'zstd'; Options = @{ CompressionType = 'Zstd' } }
        @{ Label = 'lazy refcounts, zstd'; Options = @{ LazyRefcounts = $true; CompressionType = 'Zstd' } }
    )
    foreach ($feature in $features) {
        foreach ($backing in 'None', 'Relative', 'Absolute', 'RawWithFormat') {
            foreach ($mode in 'Off', 'Metadata', 'Full') {
                foreach ($cluster in 512, 65536) {
                    $options = $feature.Options.Clone()
                    $options.Preallocation = $mode
                    $options.ClusterSizeBytes = $cluster
                    $created.Add(@{ Name = "qcow2 $($feature.Label), backing $backing, $mode, cluster $cluster"; Options = $options; Backing = $backing })
                }
            }
        }
    }
    foreach ($mode in 'Off', 'Falloc', 'Full') {
        $created.Add(@{ Name = "raw $mode"; Options = @{ Format = 'Raw'; Preallocation = $mode }; Backing = 'None' })
    }
    foreach ($mode in 'Off', 'Metadata') {
        $created.Add(@{ Name = "vdi $mode"; Options = @{ Format = 'Vdi'; Preallocation = $mode }; Backing = 'None' })
    }
    foreach ($backing in 'None', 'Relative', 'Absolute') {
        $created.Add(@{ Name = "vmdk, backing $backing"; Options = @{ Format = 'Vmdk' }; Backing = $backing })
    }
    foreach ($subformat in 'MonolithicFlat', 'TwoGbMaxExtentSparse', 'TwoGbMaxExtentFlat', 'StreamOptimized') {
        $created.Add(@{ Name = "vmdk $subformat"; Options = @{ Format = 'Vmdk'; Subformat = $subformat }; Backing = 'None' })
    }
    $created.Add(@{ Name = 'vmdk TwoGbMaxExtentSparse, backing Relative'; Options = @{ Format = 'Vmdk'; Subformat = 'TwoGbMaxExtentSparse' }; Backing = 'Relative' })
    $created.Add(@{ Name = 'vdi Static'; Options = @{ Format = 'Vdi'; Subformat = 'Static' }; Backing = 'None' })

    # Images qemu-img creates, read back by Get-VDisk.
    $byQemu = @(
        @{ Name = 'raw'; Format = 'raw'; Options = '' }
        @{ Name = 'qcow2 defaults'; Format = 'qcow2'; Options = '' }
        @{ Name = 'qcow2 compat 0.10'; Format = 'qcow2'; Options = 'compat=0.10' }
        @{ Name = 'qcow2 2M clusters, lazy'; Format = 'qcow2'; Options = 'cluster_size=2M,lazy_refcounts=on' }
        @{ Name = 'qcow2 512 clusters, refcount 1'; Format = 'qcow2'; Options = 'cluster_size=512,refcount_bits=1' }
        @{ Name = 'qcow2 zstd, refcount 64'; Format = 'qcow2'; Options = 'compression_type=zstd,refcount_bits=64' }
        @{ Name = 'qcow2 metadata preallocation'; Format = 'qcow2'; Options = 'preallocation=metadata' }
        @{ Name = 'qcow2 full preallocation'; Format = 'qcow2'; Options = 'preallocation=full,cluster_size=4k' }
        @{ Name = 'qcow2 overlay'; Format = 'qcow2'; Options = 'backing_file=base.qcow2,backing_fmt=qcow2' }
        @{ Name = 'vdi dynamic'; Format = 'vdi'; Options = '' }
        @{ Name = 'vdi static'; Format = 'vdi'; Options = 'static=on' }
        @{ Name = 'vmdk monolithicSparse'; Format = 'vmdk'; Options = '' }
        @{ Name = 'vmdk streamOptimized'; Format = 'vmdk'; Options = 'subformat=streamOptimized' }
        @{ Name = 'vmdk monolithicFlat'; Format = 'vmdk'; Options = 'subformat=monolithicFlat' }
        @{ Name = 'vmdk twoGbMaxExtentSparse'; Format = 'vmdk'; Options = 'subformat=twoGbMaxExtentSparse' }
    )
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    $size = 5MB + 512 # not a whole number of clusters

    # Asserts that qemu-img info says what Get-VDisk says about the image.
    function Assert-InfoAgrees($Info) {
        $qemu = Get-QemuInfo $Info.Path
        $qemu.format | Should -Be $Info.Format.ToString().ToLowerInvariant()
        $qemu.'virtual-size' | Should -Be $Info.VirtualSize
        $qemu.'actual-size' | Should -Be $Info.FileSize
        if ($Info.Format -ne 'Raw') {
            $qemu.'cluster-size' | Should -Be $Info.ClusterSize
            $qemu.'dirty-flag' | Should -Be $Info.Dirty
        }
        if ($Info.Format -eq 'Qcow2') {
            $data = $qemu.'format-specific'.data
            $data.compat | Should -Be $Info.Compat
            $data.'refcount-bits' | Should -Be $Info.RefcountBits
            $data.'compression-type' | Should -Be $Info.CompressionType.ToString().ToLowerInvariant()
            if ($Info.Compat -eq '1.1') {
                $data.'lazy-refcounts' | Should -Be $Info.LazyRefcounts
                $data.corrupt | Should -Be $Info.Corrupt
            } else {
                # qemu-img leaves both out for version 2 images, whose header has no such bits.
                $Info.LazyRefcounts | Should -Not -BeTrue
                $Info.Corrupt | Should -BeFalse
            }
        }
        $backingName = if ($qemu.PSObject.Properties['backing-filename']) { $qemu.'backing-filename' } else { $null }
        $backingName | Should -Be $Info.BackingPath
        if ($Info.BackingPath) {
            [System.IO.Path]::GetFullPath($qemu.'full-backing-filename') | Should -Be $Info.BackingFullPath
            $qemuFormat = if ($qemu.PSObject.Properties['backing-filename-format']) { $qemu.'backing-filename-format' } else { $null }
            $qemuFormat | Should -Be $(if ($null -ne $Info.BackingFormat) { $Info.BackingFormat.ToString().ToLowerInvariant() })
        }
    }
}

Describe 'Images New-VDisk creates, checked by qemu-img' {
    BeforeAll {
        $folder = Join-Path $TestDrive 'created'
        $null = New-Item -ItemType Directory -Path $folder, "$folder/sub"
        $null = New-VDisk -Path "$folder/base.qcow2" -SizeBytes 3MB
        $null = New-VDisk -Path "$folder/base.raw" -SizeBytes 3MB
        $null = New-VDisk -Path "$folder/base.vmdk" -SizeBytes 3MB # a VMDK overlay needs a VMDK backing image
    }
    BeforeEach { Push-Location -LiteralPath $folder }
    AfterEach { Pop-Location }

    It '<Name>' -ForEach $created -Skip:$SkipQemu {
        Assert-QemuImg
        $extension = if ($Options['Format']) { $Options['Format'].ToLowerInvariant() } else { 'qcow2' }
        $path = "sub/$([guid]::NewGuid().ToString('N')).$extension"
        $base = if ($extension -eq 'vmdk') { 'base.vmdk' } else { 'base.qcow2' }
        $backingOptions = switch ($Backing) {
            'None' { @{ SizeBytes = $size } }
            'Relative' { @{ BackingPath = $base } }
            'Absolute' { @{ BackingPath = "$folder/$base"; SizeBytes = $size } }
            'RawWithFormat' { @{ BackingPath = 'base.raw'; BackingFormat = 'Raw' } }
        }
        $info = New-VDisk -Path $path @Options @backingOptions
        $info.Path | Should -Be "$folder/$path"
        switch ($Backing) {
            'None' { $info.VirtualSize | Should -Be ($size) }
            'Relative' { $info.BackingPath | Should -Be "../$base" }
            'Absolute' { $info.BackingPath | Should -Be "$folder/$base" }
            'RawWithFormat' { $info.BackingFormat | Should -Be 'Raw' }
        }
        Assert-InfoAgrees $info
        if ($info.Format -ne 'Raw') {
            $check = Get-QemuCheck $info.Path
            $check.'check-errors' | Should -Be 0
            $check.corruptions | Should -BeIn @($null, 0) # qemu-img leaves out counts that are zero
            $check.leaks | Should -BeIn @($null, 0)
            if ($info.Format -eq 'Qcow2') { $check.'image-end-offset' | Should -BeLessOrEqual $info.FileLength }
        }
    }
}

Describe 'Images qemu-img creates, read by Get-VDisk' {
    BeforeAll {
        $folder = Join-Path $TestDrive 'byqemu'
        $null = New-Item -ItemType Directory -Path $folder
    }

    It '<Name>' -ForEach $byQemu -Skip:$SkipQemu {
        Assert-QemuImg
        $path = Join-Path $folder "$([guid]::NewGuid().ToString('N')).$Format"
        if ($Options -match 'backing_file') { $null = Invoke-QemuImg @('create', '-q', '-f', 'qcow2', (Join-Path $folder 'base.qcow2'), '3M') }
        $arguments = @('create', '-q', '-f', $Format) + $(if ($Options) { @('-o', $Options) } else { @() }) + @($path, '3M')
        Push-Location -LiteralPath $folder
        try { $null = Invoke-QemuImg $arguments } finally { Pop-Location }
        $info = Get-VDisk -LiteralPath $path -ErrorAction Stop
        Assert-InfoAgrees $info
    }
}

Describe 'Allocation seen through qemu-io' {
    It 'counts the bytes qemu-io wrote into an overlay as allocated in that layer only' -Skip:$SkipQemu {
        Assert-QemuImg
        $folder = Join-Path $TestDrive 'qemuio'
        $null = New-Item -ItemType Directory -Path $folder
        $null = New-VDisk -Path "$folder/base.qcow2" -SizeBytes 4MB
        $null = New-VDisk -Path "$folder/top.qcow2" -BackingPath "$folder/base.qcow2"
        $output = & qemu-io -t writeback -c 'write -P 0x33 64k 128k' "$folder/top.qcow2" 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($output -join "`n")
        $chain = Get-VDiskChain -LiteralPath "$folder/top.qcow2"
        $chain.AllocatedBytes | Should -Be @(128KB, 0)
        (Get-QemuCheck "$folder/top.qcow2").'check-errors' | Should -Be 0
    }
}
