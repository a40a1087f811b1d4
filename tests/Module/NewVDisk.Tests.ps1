# New-VDisk: every parameter, path resolution, -WhatIf/-Force, progress and its error ids.
# (Agreement with qemu-img for every option combination is in Interop.Tests.ps1.)

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    function Get-Magic([string] $Path) {
        $bytes = [System.IO.File]::ReadAllBytes($Path)
        [System.Text.Encoding]::ASCII.GetString($bytes, 0, 3)
    }
}

Describe 'New-VDisk paths' {
    BeforeEach {
        $folder = New-TestFolder
        Push-Location -LiteralPath $folder
    }
    AfterEach { Pop-Location }

    It 'resolves a relative path against the PowerShell location, not the process directory' {
        [System.Environment]::CurrentDirectory | Should -Not -Be $folder
        $info = New-VDisk -Path 'rel.qcow2' -SizeBytes 1MB
        $info.Path | Should -Be (Join-Path $folder 'rel.qcow2')
        Join-Path $folder 'rel.qcow2' | Should -Exist
        Join-Path ([System.Environment]::CurrentDirectory) 'rel.qcow2' | Should -Not -Exist
    }

    It 'accepts a PowerShell drive path (TestDrive:)' {
        $name = "$([guid]::NewGuid().ToString('N')).qcow2"
        $info = New-VDisk -Path "TestDrive:/$name" -SizeBytes 1MB
        $info.Path | Should -Be (Join-Path $TestDrive $name)
    }

    It 'takes wildcard characters in -Path literally' {
        $info = New-VDisk -Path 'disk[1].qcow2' -SizeBytes 1MB
        $info.Path | Should -Be (Join-Path $folder 'disk[1].qcow2')
        Test-Path -LiteralPath (Join-Path $folder 'disk[1].qcow2') | Should -BeTrue
    }

    It 'takes -Path and -SizeBytes by position' {
        $info = New-VDisk 'positional.qcow2' 2MB
        $info.VirtualSize | Should -Be 2MB
    }

    It 'fails with FileNotFound when the folder does not exist' {
        New-VDisk -Path 'missing/x.qcow2' -SizeBytes 1MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'New-VDisk')
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].TargetObject | Should -Be (Join-Path $folder 'missing/x.qcow2')
    }

    It 'fails with ImageReadOnly when the folder cannot be written' {
        $locked = Join-Path $folder 'locked'
        $null = New-Item -ItemType Directory -Path $locked
        # root ignores permission bits, so as root the folder is made immutable (chattr, from e2fsprogs).
        $asRoot = (& id -u) -eq '0'
        if ($asRoot) { & chattr +i $locked } else { & chmod 555 $locked }
        $LASTEXITCODE | Should -Be 0
        try {
            New-VDisk -Path "$locked/x.qcow2" -SizeBytes 1MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        } finally {
            if ($asRoot) { & chattr -i $locked } else { & chmod 755 $locked }
        }
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageReadOnly' 'New-VDisk')
        $err[0].CategoryInfo.Category | Should -Be 'PermissionDenied'
        $err[0].TargetObject | Should -Be "$locked/x.qcow2"
        @(Get-ChildItem -LiteralPath $locked -Force).Count | Should -Be 0
    }

    It 'fails with NotFileSystemPath for a path of another provider' {
        New-VDisk -Path 'Env:/VDISK_TEST' -SizeBytes 1MB -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'NotFileSystemPath' 'New-VDisk')
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
    }
}

Describe 'New-VDisk -SizeBytes and -Format' {
    BeforeAll { $folder = New-TestFolder }

    It 'creates a disk of 20GB as typed' {
        (New-VDisk -Path "$folder/big.qcow2" -SizeBytes 20GB).VirtualSize | Should -Be 21474836480
    }

    It 'accepts the alias -Size' {
        (New-VDisk -Path "$folder/alias.qcow2" -Size 3MB).VirtualSize | Should -Be 3MB
    }

    It 'rounds the size up to whole 512-byte sectors' {
        (New-VDisk -Path "$folder/odd.qcow2" -SizeBytes 1000).VirtualSize | Should -Be 1024
    }

    It 'fails with InvalidArgument for a size beyond the largest disk' {
        New-VDisk -Path "$folder/huge.qcow2" -SizeBytes ([ulong]::MaxValue) -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'New-VDisk')
        "$folder/huge.qcow2" | Should -Not -Exist
    }

    It 'picks <Format> for <Name> from the extension' -ForEach @(
        @{ Name = 'a.raw'; Format = 'Raw' }
        @{ Name = 'a.img'; Format = 'Raw' }
        @{ Name = 'A.IMG'; Format = 'Raw' }
        @{ Name = 'a.qcow2'; Format = 'Qcow2' }
        @{ Name = 'a.vdi'; Format = 'Vdi' }
        @{ Name = 'a.vmdk'; Format = 'Vmdk' }
        @{ Name = 'a.disk'; Format = 'Qcow2' }
        @{ Name = 'noextension'; Format = 'Qcow2' }
    ) {
        $info = New-VDisk -Path "$folder/$Name" -SizeBytes 1MB
        $info.Format | Should -Be $Format
        (Get-Magic "$folder/$Name") -eq 'QFI' | Should -Be ($Format -eq 'Qcow2')
        (Get-VDisk -LiteralPath "$folder/$Name").Format | Should -Be $Format
    }

    It 'lets -Format override the extension' {
        $info = New-VDisk -Path "$folder/override.qcow2" -SizeBytes 1MB -Format Raw
        $info.Format | Should -Be 'Raw'
        (Get-Item "$folder/override.qcow2").Length | Should -Be 1MB
        (New-VDisk -Path "$folder/override.img" -SizeBytes 1MB -Format Qcow2).Format | Should -Be 'Qcow2'
    }

    It 'creates a monolithicSparse VMDK image <Name>' -ForEach @(
        @{ Name = 'with -Format'; File = 'x1.qcow2'; Options = @{ Format = 'Vmdk' } }
        @{ Name = 'from the extension'; File = 'x2.vmdk'; Options = @{} }
    ) {
        $info = New-VDisk -Path "$folder/$File" -SizeBytes 8MB @Options
        $info.Format | Should -Be 'Vmdk'
        $info.Subformat | Should -Be 'monolithicSparse'
        $info.VirtualSize | Should -Be 8MB
        [System.Text.Encoding]::ASCII.GetString([System.IO.File]::ReadAllBytes("$folder/$File"), 0, 4) | Should -Be 'KDMV'
    }

    It 'creates a <Subformat> VDI image with -Preallocation <Mode>' -ForEach @(
        @{ Mode = 'Off'; Subformat = 'dynamic' }
        @{ Mode = 'Metadata'; Subformat = 'static' }
    ) {
        $info = New-VDisk -Path "$folder/$Mode.vdi" -SizeBytes 8MB -Preallocation $Mode
        $info.Format | Should -Be 'Vdi'
        $info.VirtualSize | Should -Be 8MB
        $info.Subformat | Should -Be $Subformat
    }

    It 'fails with InvalidArgument for a VDI overlay or Falloc preallocation' {
        $null = New-VDisk -Path "$folder/vdibase.qcow2" -SizeBytes 1MB
        New-VDisk -Path "$folder/falloc.vdi" -SizeBytes 1MB -Preallocation Falloc -ErrorVariable err -ErrorAction SilentlyContinue
        New-VDisk -Path "$folder/overlay.vdi" -BackingPath "$folder/vdibase.qcow2" -ErrorVariable +err -ErrorAction SilentlyContinue
        $err.FullyQualifiedErrorId | Should -Be (@(Get-ErrorId 'InvalidArgument' 'New-VDisk') * 2)
        "$folder/falloc.vdi", "$folder/overlay.vdi" | Should -Not -Exist
    }

    It 'returns a VDiskInfo' {
        New-VDisk -Path "$folder/type.qcow2" -SizeBytes 1MB | Should -BeOfType VDisk.PowerShell.VDiskInfo
    }
}

Describe 'New-VDisk -Subformat' {
    BeforeEach { $folder = New-TestFolder }

    It 'creates a <Subformat> VMDK image with its files, which Get-VDisk reports as <CreateType>' -ForEach @(
        @{ Subformat = 'MonolithicSparse'; CreateType = 'monolithicSparse'; Files = @('disk.vmdk') }
        @{ Subformat = 'MonolithicFlat'; CreateType = 'monolithicFlat'; Files = @('disk-flat.vmdk', 'disk.vmdk') }
        @{ Subformat = 'TwoGbMaxExtentSparse'; CreateType = 'twoGbMaxExtentSparse'; Files = @('disk-s001.vmdk', 'disk-s002.vmdk', 'disk.vmdk') }
        @{ Subformat = 'TwoGbMaxExtentFlat'; CreateType = 'twoGbMaxExtentFlat'; Files = @('disk-f001.vmdk', 'disk-f002.vmdk', 'disk.vmdk') }
        @{ Subformat = 'StreamOptimized'; CreateType = 'streamOptimized'; Files = @('disk.vmdk') }
    ) {
        $info = New-VDisk -Path "$folder/disk.vmdk" -SizeBytes 3GB -Subformat $Subformat
        $info.Format | Should -Be 'Vmdk'
        $info.Subformat | Should -BeExactly $CreateType
        $info.VirtualSize | Should -Be 3GB
        (Get-VDisk -LiteralPath "$folder/disk.vmdk").Subformat | Should -BeExactly $CreateType
        (Get-ChildItem -LiteralPath $folder -Force).Name | Sort-Object | Should -Be $Files
    }

    It 'creates a VMDK subformat under another extension with -Format Vmdk' {
        (New-VDisk -Path "$folder/disk.img" -SizeBytes 1MB -Format Vmdk -Subformat MonolithicFlat).Subformat | Should -Be 'monolithicFlat'
    }

    It 'creates a <Subformat> VDI image' -ForEach @(
        @{ Subformat = 'Dynamic'; Reported = 'dynamic' }
        @{ Subformat = 'Static'; Reported = 'static' }
    ) {
        $info = New-VDisk -Path "$folder/disk.vdi" -SizeBytes 8MB -Subformat $Subformat
        $info.Subformat | Should -BeExactly $Reported
        $info.FileLength -ge 8MB | Should -Be ($Subformat -eq 'Static') -Because 'a static VDI maps every block'
    }

    It 'fails with InvalidArgument for a <Subformat> <Name>' -ForEach @(
        @{ Name = 'qcow2 image'; Subformat = 'Static'; File = 'disk.qcow2'; Options = @{} }
        @{ Name = 'raw image'; Subformat = 'StreamOptimized'; File = 'disk.raw'; Options = @{} }
        @{ Name = 'VDI image'; Subformat = 'MonolithicFlat'; File = 'disk.vdi'; Options = @{} }
        @{ Name = 'VMDK image'; Subformat = 'Dynamic'; File = 'disk.vmdk'; Options = @{} }
        @{ Name = 'VDI image with -Preallocation Metadata'; Subformat = 'Dynamic'; File = 'disk.vdi'; Options = @{ Preallocation = 'Metadata' } }
    ) {
        New-VDisk -Path "$folder/$File" -SizeBytes 1MB -Subformat $Subformat @Options -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'New-VDisk')
        $err[0].TargetObject | Should -Be "$folder/$File"
        $err[0].Exception.Message | Should -Match $Subformat
        Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty
    }

    It 'fails with InvalidArgument for a flat VMDK overlay' {
        $null = New-VDisk -Path "$folder/base.vmdk" -SizeBytes 1MB
        New-VDisk -Path "$folder/flat.vmdk" -BackingPath "$folder/base.vmdk" -Subformat MonolithicFlat -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'New-VDisk')
        "$folder/flat.vmdk" | Should -Not -Exist
    }

    It 'fails with FileExists when an extent file it would write exists' {
        Set-Content -LiteralPath "$folder/disk-flat.vmdk" -Value 'keep me'
        New-VDisk -Path "$folder/disk.vmdk" -SizeBytes 1MB -Subformat MonolithicFlat -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileExists' 'New-VDisk')
        Get-Content -LiteralPath "$folder/disk-flat.vmdk" | Should -Be 'keep me'
        "$folder/disk.vmdk" | Should -Not -Exist
    }

    It 'names the subformat with -WhatIf' {
        $said = Invoke-ChildPwsh "Import-Module '$((Get-Module VDisk).Path)'; New-VDisk -Path '$folder/said.vmdk' -SizeBytes 1GB -Subformat StreamOptimized -WhatIf"
        $said | Should -Match 'What if: .*Create Vmdk \(StreamOptimized\) image of 1 GiB'
        "$folder/said.vmdk" | Should -Not -Exist
    }
}

Describe 'New-VDisk qcow2 options' {
    BeforeAll { $folder = New-TestFolder }

    It 'writes -ClusterSizeBytes <_>' -ForEach 512, 4096, 65536, 2MB {
        (New-VDisk -Path "$folder/c$_.qcow2" -SizeBytes 4MB -ClusterSizeBytes $_).ClusterSize | Should -Be $_
    }

    It 'defaults to 64 KiB clusters, 16-bit refcounts, compat 1.1, zlib, no lazy refcounts' {
        $info = New-VDisk -Path "$folder/defaults.qcow2" -SizeBytes 1MB
        $info.ClusterSize | Should -Be 65536
        $info.RefcountBits | Should -Be 16
        $info.Compat | Should -Be '1.1'
        $info.CompressionType | Should -Be 'Zlib'
        $info.LazyRefcounts | Should -BeFalse
        $info.Dirty | Should -BeFalse
        $info.Corrupt | Should -BeFalse
        $info.Encrypted | Should -BeFalse
        $info.SnapshotCount | Should -Be 0
        $info.BackingPath | Should -BeNullOrEmpty
        $info.ChainDepth | Should -Be 0
    }

    It 'fails with InvalidArgument for a cluster size that is not a power of two' {
        New-VDisk -Path "$folder/c1000.qcow2" -SizeBytes 1MB -ClusterSizeBytes 1000 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'New-VDisk')
        $err[0].TargetObject | Should -Be "$folder/c1000.qcow2"
        "$folder/c1000.qcow2" | Should -Not -Exist
    }

    It 'writes -RefcountBits <_>' -ForEach 1, 2, 4, 8, 16, 32, 64 {
        (New-VDisk -Path "$folder/r$_.qcow2" -SizeBytes 1MB -RefcountBits $_).RefcountBits | Should -Be $_
    }

    It 'rejects -RefcountBits 3 when binding' {
        { New-VDisk -Path "$folder/r3.qcow2" -SizeBytes 1MB -RefcountBits 3 } |
            Should -Throw -ErrorId 'ParameterArgumentValidationError,VDisk.PowerShell.Commands.NewVDiskCommand'
    }

    It 'writes -Compat <_>' -ForEach '0.10', '1.1' {
        (New-VDisk -Path "$folder/compat$_.qcow2" -SizeBytes 1MB -Compat $_).Compat | Should -Be $_
    }

    It 'rejects -Compat 1.0 when binding' {
        { New-VDisk -Path "$folder/compat10.qcow2" -SizeBytes 1MB -Compat '1.0' } |
            Should -Throw -ErrorId 'ParameterArgumentValidationError,VDisk.PowerShell.Commands.NewVDiskCommand'
    }

    It 'writes -LazyRefcounts' {
        (New-VDisk -Path "$folder/lazy.qcow2" -SizeBytes 1MB -LazyRefcounts).LazyRefcounts | Should -BeTrue
    }

    It 'writes -CompressionType <_>' -ForEach 'Zlib', 'Zstd' {
        (New-VDisk -Path "$folder/comp$_.qcow2" -SizeBytes 1MB -CompressionType $_).CompressionType | Should -Be $_
    }

    It 'fails with InvalidArgument for <Name> with -Compat 0.10' -ForEach @(
        @{ Name = 'lazy refcounts'; Options = @{ LazyRefcounts = $true } }
        @{ Name = 'zstd'; Options = @{ CompressionType = 'Zstd' } }
        @{ Name = '64-bit refcounts'; Options = @{ RefcountBits = 64 } }
    ) {
        $path = "$folder/v2-$([guid]::NewGuid().ToString('N')).qcow2"
        New-VDisk -Path $path -SizeBytes 1MB -Compat '0.10' @Options -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'New-VDisk')
        $path | Should -Not -Exist
    }

    It 'fails with InvalidArgument when qcow2 option -<Name> is given for a raw image' -ForEach @(
        @{ Name = 'ClusterSizeBytes'; Options = @{ ClusterSizeBytes = 4096 } }
        @{ Name = 'LazyRefcounts'; Options = @{ LazyRefcounts = $true } }
        @{ Name = 'Compat'; Options = @{ Compat = '1.1' } }
        @{ Name = 'CompressionType'; Options = @{ CompressionType = 'Zstd' } }
        @{ Name = 'RefcountBits'; Options = @{ RefcountBits = 16 } }
    ) {
        $path = "$folder/raw-$Name.img"
        New-VDisk -Path $path -SizeBytes 1MB @Options -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'New-VDisk')
        $err[0].Exception.Message | Should -Match $Name
        $path | Should -Not -Exist
    }
}

Describe 'New-VDisk -Preallocation' {
    BeforeAll { $folder = New-TestFolder }

    It 'keeps a <Format> image sparse with Off' -ForEach @{ Format = 'Raw' }, @{ Format = 'Qcow2' } {
        $info = New-VDisk -Path "$folder/off.$Format" -SizeBytes 8MB -Format $Format -Preallocation Off
        $info.FileSize | Should -BeLessThan 1MB
    }

    It 'reserves the whole <Format> disk with <Mode>' -ForEach @(
        @{ Format = 'Raw'; Mode = 'Falloc' }, @{ Format = 'Raw'; Mode = 'Full' }
        @{ Format = 'Qcow2'; Mode = 'Falloc' }, @{ Format = 'Qcow2'; Mode = 'Full' }
    ) {
        $info = New-VDisk -Path "$folder/$Mode.$Format" -SizeBytes 8MB -Format $Format -Preallocation $Mode
        $info.FileSize | Should -BeGreaterOrEqual 8MB
        $info.FileLength | Should -BeGreaterOrEqual 8MB
    }

    It 'writes qcow2 tables but no data with Metadata' {
        $info = New-VDisk -Path "$folder/meta.qcow2" -SizeBytes 8MB -Preallocation Metadata
        $info.FileLength | Should -BeGreaterOrEqual 8MB
        $info.FileSize | Should -BeLessThan 1MB
    }

    It 'fails with InvalidArgument for Metadata on a raw image' {
        New-VDisk -Path "$folder/meta.img" -SizeBytes 1MB -Preallocation Metadata -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'New-VDisk')
        "$folder/meta.img" | Should -Not -Exist
    }

    It 'writes progress while preallocating and completes the progress record' {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddCommand('Import-Module').AddParameter('Name', (Get-Module VDisk).Path).AddStatement()
            $null = $ps.AddCommand('New-VDisk').AddParameter('Path', "$folder/progress.qcow2").AddParameter('SizeBytes', 512MB).AddParameter('Preallocation', 'Full')
            $output = $ps.Invoke()
            $ps.Streams.Error | Should -BeNullOrEmpty
            $output[0].VirtualSize | Should -Be 512MB
            $records = @($ps.Streams.Progress | Where-Object Activity -EQ 'New-VDisk')
            $records.Count | Should -BeGreaterThan 0
            $records[-1].RecordType | Should -Be 'Completed'
        } finally {
            $ps.Dispose()
        }
    }
}

Describe 'New-VDisk stopped with Ctrl+C' {
    It 'stops a long preallocation promptly and leaves no file behind' {
        $folder = New-TestFolder
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddCommand('Import-Module').AddParameter('Name', (Get-Module VDisk).Path).AddStatement()
            $null = $ps.AddCommand('New-VDisk').AddParameter('Path', "$folder/stopped.qcow2").AddParameter('SizeBytes', 64GB).AddParameter('Preallocation', 'Full')
            $elapsed = Stop-AfterProgress $ps 'New-VDisk'
            $elapsed.TotalSeconds | Should -BeLessThan 10
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            Get-ChildItem -LiteralPath $folder -Force | Should -BeNullOrEmpty
        } finally {
            $ps.Dispose()
        }
    }
}

Describe 'New-VDisk -BackingPath' {
    BeforeEach {
        $folder = New-TestFolder
        $base = New-VDisk -Path "$folder/base.qcow2" -SizeBytes 16MB
        $null = New-Item -ItemType Directory -Path "$folder/sub"
        Push-Location -LiteralPath $folder
    }
    AfterEach { Pop-Location }

    It 'stores a relative backing path relative to the overlay folder' {
        $info = New-VDisk -Path 'sub/overlay.qcow2' -BackingPath 'base.qcow2'
        $info.BackingPath | Should -Be '../base.qcow2'
        $info.BackingFullPath | Should -Be $base.Path
        $info.ChainDepth | Should -Be 1
    }

    It 'resolves a relative backing path against the PowerShell location' {
        Push-Location -LiteralPath "$folder/sub"
        try {
            $info = New-VDisk -Path 'overlay.qcow2' -BackingPath '../base.qcow2'
        } finally {
            Pop-Location
        }
        $info.Path | Should -Be "$folder/sub/overlay.qcow2"
        $info.BackingPath | Should -Be '../base.qcow2'
    }

    It 'stores an absolute backing path as absolute' {
        $info = New-VDisk -Path 'sub/overlay.qcow2' -BackingPath $base.Path
        $info.BackingPath | Should -Be $base.Path
    }

    It 'stores a drive-qualified backing path (TestDrive:) as absolute' {
        $relativeToDrive = [System.IO.Path]::GetRelativePath($TestDrive, $base.Path)
        $info = New-VDisk -Path 'sub/overlay.qcow2' -BackingPath "TestDrive:/$relativeToDrive"
        $info.BackingPath | Should -Be $base.Path
    }

    It "takes the backing image's size by default and -SizeBytes when given" {
        (New-VDisk -Path 'same.qcow2' -BackingPath 'base.qcow2').VirtualSize | Should -Be 16MB
        (New-VDisk -Path 'bigger.qcow2' -BackingPath 'base.qcow2' -SizeBytes 32MB).VirtualSize | Should -Be 32MB
        (New-VDisk 'positional.qcow2' 24MB -BackingPath 'base.qcow2').VirtualSize | Should -Be 24MB
    }

    It 'records the probed backing format: <Format>' -ForEach @{ Format = 'Qcow2' }, @{ Format = 'Raw' } {
        $null = New-VDisk -Path "probe.$Format" -SizeBytes 1MB -Format $Format
        (New-VDisk -Path 'overlay.qcow2' -BackingPath "probe.$Format").BackingFormat | Should -Be $Format
    }

    It 'records -BackingFormat as given' {
        $null = New-VDisk -Path 'plain.img' -SizeBytes 1MB
        (New-VDisk -Path 'overlay.qcow2' -BackingPath 'plain.img' -BackingFormat Raw).BackingFormat | Should -Be 'Raw'
    }

    It 'fails with NotAnImage when -BackingFormat does not match the backing file' {
        $null = New-VDisk -Path 'plain.img' -SizeBytes 1MB
        New-VDisk -Path 'overlay.qcow2' -BackingPath 'plain.img' -BackingFormat Qcow2 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'NotAnImage' 'New-VDisk')
        $err[0].TargetObject | Should -Be "$folder/plain.img"
        "$folder/overlay.qcow2" | Should -Not -Exist
    }

    It 'fails with FileNotFound when the backing file does not exist' {
        New-VDisk -Path 'overlay.qcow2' -BackingPath 'nothere.qcow2' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'New-VDisk')
        $err[0].TargetObject | Should -Be "$folder/nothere.qcow2"
        "$folder/overlay.qcow2" | Should -Not -Exist
    }

    It 'fails with InvalidArgument for a raw overlay' {
        New-VDisk -Path 'overlay.img' -BackingPath 'base.qcow2' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'New-VDisk')
        "$folder/overlay.img" | Should -Not -Exist
    }

    It 'fails with InvalidArgument when an image would be its own backing file' {
        New-VDisk -Path 'base.qcow2' -BackingPath 'base.qcow2' -Force -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'New-VDisk')
        (Get-VDisk 'base.qcow2').BackingPath | Should -BeNullOrEmpty
    }

    It 'needs -SizeBytes or -BackingPath (no parameter set without either)' {
        $sets = (Get-Command New-VDisk).ParameterSets
        ($sets | Where-Object Name -EQ 'Size').Parameters.Where({ $_.Name -eq 'SizeBytes' }).IsMandatory | Should -BeTrue
        ($sets | Where-Object Name -EQ 'Backing').Parameters.Where({ $_.Name -eq 'BackingPath' }).IsMandatory | Should -BeTrue
    }
}

Describe 'New-VDisk -Force and -WhatIf' {
    BeforeEach {
        $folder = New-TestFolder
        $existing = "$folder/existing.qcow2"
        $null = New-VDisk -Path $existing -SizeBytes 1MB
        $originalHash = (Get-FileHash -LiteralPath $existing).Hash
    }

    It 'fails with FileExists and leaves the file untouched without -Force' {
        New-VDisk -Path $existing -SizeBytes 2MB -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileExists' 'New-VDisk')
        $err[0].CategoryInfo.Category | Should -Be 'ResourceExists'
        $err[0].TargetObject | Should -Be $existing
        (Get-FileHash -LiteralPath $existing).Hash | Should -Be $originalHash
    }

    It 'overwrites with -Force' {
        (New-VDisk -Path $existing -SizeBytes 2MB -Force).VirtualSize | Should -Be 2MB
        (Get-VDisk -LiteralPath $existing).VirtualSize | Should -Be 2MB
    }

    It 'creates nothing and writes nothing with -WhatIf' {
        New-VDisk -Path "$folder/new.qcow2" -SizeBytes 1MB -WhatIf | Should -BeNullOrEmpty
        "$folder/new.qcow2" | Should -Not -Exist
        @(Get-ChildItem -LiteralPath $folder -Force).Count | Should -Be 1
    }

    It 'leaves an existing file untouched with -Force -WhatIf' {
        New-VDisk -Path $existing -SizeBytes 2MB -Force -WhatIf | Should -BeNullOrEmpty
        (Get-FileHash -LiteralPath $existing).Hash | Should -Be $originalHash
    }

    It 'says what it would do with -WhatIf' {
        $said = Invoke-ChildPwsh "Import-Module '$((Get-Module VDisk).Path)'; New-VDisk -Path '$folder/said.qcow2' -SizeBytes 20GB -WhatIf"
        $said | Should -Match 'What if: .*Create Qcow2 image of 20 GiB.*said\.qcow2'
        "$folder/said.qcow2" | Should -Not -Exist
    }

    It 'creates without asking with -Confirm:$false' {
        (New-VDisk -Path "$folder/confirmed.qcow2" -SizeBytes 1MB -Confirm:$false).Path | Should -Be "$folder/confirmed.qcow2"
    }

    It 'declares SupportsShouldProcess' {
        (Get-Command New-VDisk).Parameters.Keys | Should -Contain 'WhatIf'
        (Get-Command New-VDisk).Parameters.Keys | Should -Contain 'Confirm'
    }
}
