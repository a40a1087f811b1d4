# Convert-VDisk: output naming (one output per input, named after it), formats and options, -WhatIf / -Force /
# -PassThru, every error id, progress and Ctrl+C. Content is checked by converting back to raw and hashing;
# the last block checks representative outputs with qemu-img (the engine's tests cover the full format matrix).

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    # The SHA-256 of an image's guest content: the image converted to raw.
    function Get-GuestHash([string] $Path) {
        $raw = Join-Path $TestDrive "$([guid]::NewGuid().ToString('N')).raw"
        Convert-VDisk -LiteralPath $Path -DestinationPath $raw -ErrorAction Stop
        try { (Get-FileHash -LiteralPath $raw).Hash } finally { Remove-Item -LiteralPath $raw }
    }

    # The files of a folder, hidden ones (temporary outputs) included.
    function Get-FolderNames([string] $Folder) {
        @(Get-ChildItem -LiteralPath $Folder -Force -Recurse -File | ForEach-Object { [System.IO.Path]::GetRelativePath($Folder, $_.FullName) } | Sort-Object)
    }
}

Describe 'Convert-VDisk destinations' {
    BeforeEach {
        $folder = New-TestFolder
        $source = New-PatternImage "$folder/disk.raw" 8MB 0, 5MB
        $sourceHash = (Get-FileHash -LiteralPath $source).Hash
        Push-Location -LiteralPath $folder
    }
    AfterEach { Pop-Location }

    It 'writes -DestinationPath with the format its extension gives: <Name>' -ForEach @(
        @{ Name = 'out.qcow2'; Format = 'Qcow2' }
        @{ Name = 'out.img'; Format = 'Raw' }
        @{ Name = 'out.vmdk'; Format = 'Vmdk' }
        @{ Name = 'out.vdi'; Format = 'Vdi' }
        @{ Name = 'out.disk'; Format = 'Qcow2' }
    ) {
        Convert-VDisk disk.raw $Name | Should -BeNullOrEmpty
        $info = Get-VDisk -LiteralPath "$folder/$Name"
        $info.Format | Should -Be $Format
        $info.VirtualSize | Should -Be 8MB
        Get-GuestHash "$folder/$Name" | Should -Be $sourceHash
    }

    It 'lets -DestinationFormat override the extension' {
        Convert-VDisk disk.raw out.img -DestinationFormat Vdi
        (Get-VDisk out.img).Format | Should -Be 'Vdi'
    }

    It 'round-trips raw -> qcow2 -> raw byte for byte' {
        Convert-VDisk disk.raw mid.qcow2
        Convert-VDisk mid.qcow2 back.raw
        (Get-FileHash back.raw).Hash | Should -Be $sourceHash
    }

    It 'writes qcow2 beside the input, named after it, without -DestinationPath' {
        Convert-VDisk disk.raw
        Get-FolderNames $folder | Should -Be @('disk.qcow2', 'disk.raw')
        (Get-VDisk disk.qcow2).Format | Should -Be 'Qcow2'
    }

    It 'names the output <Extension> for -DestinationFormat <Format>' -ForEach @(
        @{ Format = 'Qcow2'; Extension = '.qcow2' }
        @{ Format = 'Vmdk'; Extension = '.vmdk' }
        @{ Format = 'Vdi'; Extension = '.vdi' }
    ) {
        Convert-VDisk disk.raw -DestinationFormat $Format
        (Get-VDisk "disk$Extension").Format | Should -Be $Format
    }

    It 'names a raw output .raw, and adds the extension to a name without one' {
        Convert-VDisk disk.raw noext.qcow2
        Rename-Item noext.qcow2 noext
        Convert-VDisk noext -DestinationFormat Raw
        (Get-FileHash noext.raw).Hash | Should -Be $sourceHash
    }

    It 'resolves relative paths against the PowerShell location, not the process directory' {
        $null = New-Item -ItemType Directory sub
        Push-Location sub
        try { Convert-VDisk ../disk.raw out.qcow2 } finally { Pop-Location }
        "$folder/sub/out.qcow2" | Should -Exist
        Join-Path ([System.Environment]::CurrentDirectory) 'out.qcow2' | Should -Not -Exist
    }

    It 'takes brackets literally in -LiteralPath and -DestinationPath' {
        Copy-Item -LiteralPath disk.raw -Destination 'disk[1].raw'
        Convert-VDisk -LiteralPath "$folder/disk[1].raw" -DestinationPath 'out[2].qcow2'
        Test-Path -LiteralPath "$folder/out[2].qcow2" | Should -BeTrue
    }
}

Describe 'Convert-VDisk pipeline input' {
    BeforeEach {
        $folder = New-TestFolder
        $null = New-Item -ItemType Directory "$folder/nested", "$folder/empty.d"
        $null = New-PatternImage "$folder/a.raw" 4MB 0 0x11
        $null = New-PatternImage "$folder/b.raw" 4MB 1MB 0x22
        $null = New-PatternImage "$folder/nested/c.raw" 2MB 0 0x33
    }

    It 'converts each item from Get-ChildItem beside itself, named after it, skipping folders' {
        $result = Get-ChildItem -LiteralPath $folder -Recurse -Filter *.raw | Convert-VDisk -DestinationFormat Qcow2 -ErrorVariable err
        $err | Should -BeNullOrEmpty
        $result | Should -BeNullOrEmpty
        Get-FolderNames $folder | Should -Be @('a.qcow2', 'a.raw', 'b.qcow2', 'b.raw', 'nested/c.qcow2', 'nested/c.raw')
        foreach ($name in 'a', 'b', 'nested/c') {
            Get-GuestHash "$folder/$name.qcow2" | Should -Be (Get-FileHash "$folder/$name.raw").Hash
        }
    }

    It 'writes one VDiskInfo per output with -PassThru' {
        $result = Get-ChildItem -LiteralPath $folder | Convert-VDisk -DestinationFormat Vdi -PassThru
        $result | Should -HaveCount 2
        $result[0] | Should -BeOfType VDisk.PowerShell.VDiskInfo
        $result.Path | Should -Be @("$folder/a.vdi", "$folder/b.vdi")
        $result.Format | Should -Be @('Vdi', 'Vdi')
        $result.VirtualSize | Should -Be @(4MB, 4MB)
    }

    It 'expands wildcards in -Path and binds piped strings' {
        Convert-VDisk -Path "$folder/*.raw" -DestinationFormat Vmdk
        "$folder/nested/c.raw" | Convert-VDisk -DestinationFormat Vmdk
        Get-FolderNames $folder | Should -Be @('a.raw', 'a.vmdk', 'b.raw', 'b.vmdk', 'nested/c.raw', 'nested/c.vmdk')
    }

    It 'skips an output it wrote itself when it meets it again as an input' {
        $verbose = "$folder/a.raw", "$folder/a.qcow2" | Convert-VDisk -DestinationFormat Qcow2 -ErrorVariable err -Verbose 4>&1
        $err | Should -BeNullOrEmpty
        @($verbose | Where-Object { $_ -match "Skipping '.*a\.qcow2': this command wrote it" }) | Should -HaveCount 1
        "$folder/a.qcow2" | Should -Exist
    }

    It 'goes on after an input fails: one error, the other outputs written' {
        "$folder/a.raw", "$folder/missing.raw", "$folder/b.raw" | Convert-VDisk -ErrorVariable err -ErrorAction SilentlyContinue
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Convert-VDisk')
        "$folder/a.qcow2", "$folder/b.qcow2" | Should -Exist
    }
}

Describe 'Convert-VDisk -WhatIf, -Force, -Confirm' {
    BeforeEach {
        $folder = New-TestFolder
        $source = New-PatternImage "$folder/disk.raw" 4MB 0
        $existing = New-PatternImage "$folder/existing.raw" 2MB 0 0x77
        $existingHash = (Get-FileHash -LiteralPath $existing).Hash
    }

    It 'writes nothing and returns nothing with -WhatIf' {
        $before = Get-FolderNames $folder
        Convert-VDisk $source "$folder/new.qcow2" -WhatIf -PassThru | Should -BeNullOrEmpty
        Get-ChildItem -LiteralPath $folder | Convert-VDisk -DestinationFormat Vmdk -WhatIf
        Get-FolderNames $folder | Should -Be $before
    }

    It 'leaves an existing output untouched with -Force -WhatIf' {
        Convert-VDisk $source $existing -Force -WhatIf
        (Get-FileHash -LiteralPath $existing).Hash | Should -Be $existingHash
    }

    It 'says what it would write with -WhatIf' {
        $said = Invoke-ChildPwsh "Import-Module '$((Get-Module VDisk).Path)'; Convert-VDisk '$source' '$folder/said.vmdk' -Compress -WhatIf"
        $said | Should -Match "What if: .*Create compressed Vmdk image converted from '.*disk\.raw'.*said\.vmdk"
    }

    It 'overwrites an existing output with -Force' {
        $info = Convert-VDisk $source $existing -Force -PassThru
        $info.VirtualSize | Should -Be 4MB
        (Get-FileHash -LiteralPath $existing).Hash | Should -Be (Get-FileHash -LiteralPath $source).Hash
    }

    It 'converts without asking with -Confirm:$false' {
        Convert-VDisk $source "$folder/confirmed.qcow2" -Confirm:$false
        "$folder/confirmed.qcow2" | Should -Exist
    }

    It 'declares SupportsShouldProcess with ConfirmImpact Medium' {
        $attribute = (Get-Command Convert-VDisk).ImplementingType.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0]
        $attribute.SupportsShouldProcess | Should -BeTrue
        $attribute.ConfirmImpact | Should -Be 'Medium'
    }
}

Describe 'Convert-VDisk options' {
    BeforeAll {
        $folder = New-TestFolder
        # 16 MiB with three 1 MiB runs of one byte value (compressible) and zeroes elsewhere.
        $source = New-PatternImage "$folder/source.raw" 16MB 0, 6MB, 15MB
        $sourceHash = (Get-FileHash -LiteralPath $source).Hash
        $plain = Convert-VDisk $source "$folder/plain.qcow2" -PassThru
    }

    It 'compresses qcow2 output with -Compress (zlib by default) and keeps the content' {
        $info = Convert-VDisk $source "$folder/zlib.qcow2" -Compress -PassThru
        $info.FileSize | Should -BeLessThan ($plain.FileSize / 4)
        $info.CompressionType | Should -Be 'Zlib'
        Get-GuestHash $info.Path | Should -Be $sourceHash
    }

    It 'compresses with zstd and records it with -Compress -CompressionType Zstd' {
        $info = Convert-VDisk $source "$folder/zstd.qcow2" -Compress -CompressionType Zstd -PassThru
        $info.CompressionType | Should -Be 'Zstd'
        $info.FileSize | Should -BeLessThan ($plain.FileSize / 4)
        Get-GuestHash $info.Path | Should -Be $sourceHash
    }

    It 'records -CompressionType without -Compress' {
        (Convert-VDisk $source "$folder/zstd-header.qcow2" -CompressionType Zstd -PassThru).CompressionType | Should -Be 'Zstd'
    }

    It 'writes a streamOptimized VMDK for -Compress with a .vmdk output' {
        $info = Convert-VDisk $source "$folder/compressed.vmdk" -Compress -PassThru
        $info.Subformat | Should -Be 'streamOptimized'
        Get-GuestHash $info.Path | Should -Be $sourceHash
    }

    It 'writes VMDK -Subformat <Subformat> with its files' -ForEach @(
        @{ Subformat = 'MonolithicSparse'; Files = @('sub-MonolithicSparse.vmdk') }
        @{ Subformat = 'MonolithicFlat'; Files = @('sub-MonolithicFlat-flat.vmdk', 'sub-MonolithicFlat.vmdk') }
        @{ Subformat = 'TwoGbMaxExtentSparse'; Files = @('sub-TwoGbMaxExtentSparse-s001.vmdk', 'sub-TwoGbMaxExtentSparse.vmdk') }
        @{ Subformat = 'TwoGbMaxExtentFlat'; Files = @('sub-TwoGbMaxExtentFlat-f001.vmdk', 'sub-TwoGbMaxExtentFlat.vmdk') }
        @{ Subformat = 'StreamOptimized'; Files = @('sub-StreamOptimized.vmdk') }
    ) {
        $out = New-TestFolder
        $info = Convert-VDisk $source "$out/sub-$Subformat.vmdk" -Subformat $Subformat -PassThru
        $info.Subformat | Should -Be $Subformat
        Get-FolderNames $out | Should -Be $Files
        Get-GuestHash $info.Path | Should -Be $sourceHash
    }

    It 'writes VDI -Subformat <_>' -ForEach 'Dynamic', 'Static' {
        $info = Convert-VDisk $source "$folder/$_.vdi" -Subformat $_ -PassThru
        $info.Subformat | Should -Be $_
        Get-GuestHash $info.Path | Should -Be $sourceHash
    }

    It 'writes -ClusterSizeBytes <_>' -ForEach 512, 2MB {
        $info = Convert-VDisk $source "$folder/cluster$_.qcow2" -ClusterSizeBytes $_ -PassThru
        $info.ClusterSize | Should -Be $_
        Get-GuestHash $info.Path | Should -Be $sourceHash
    }

    It 'reserves the whole disk with -Preallocation Full' {
        $info = Convert-VDisk $source "$folder/full.qcow2" -Preallocation Full -PassThru
        $info.FileSize | Should -BeGreaterOrEqual 16MB
        Get-GuestHash $info.Path | Should -Be $sourceHash
    }

    It 'keeps zero runs sparse by default and writes every byte with -SparseThresholdBytes 0' {
        (Convert-VDisk $source "$folder/sparse.raw" -PassThru).FileSize | Should -Be 3MB
        (Convert-VDisk $source "$folder/dense.raw" -SparseThresholdBytes 0 -PassThru).FileSize | Should -Be 16MB
        (Get-FileHash "$folder/dense.raw").Hash | Should -Be $sourceHash
    }

    It 'gives the same output with -ThrottleLimit <_>' -ForEach 1, 7 {
        Get-GuestHash (Convert-VDisk $source "$folder/throttle$_.qcow2" -ThrottleLimit $_ -Compress -PassThru).Path | Should -Be $sourceHash
    }

    It 'rejects -ThrottleLimit 0 when binding' {
        { Convert-VDisk $source "$folder/t0.qcow2" -ThrottleLimit 0 } |
            Should -Throw -ErrorId 'ParameterArgumentValidationError,VDisk.PowerShell.Commands.ConvertVDiskCommand'
    }

    It 'gives the same output with -CacheMode <_> and -SourceCacheMode <_>' -ForEach 'Writeback', 'None', 'Writethrough', 'DirectSync', 'Unsafe' {
        $info = Convert-VDisk $source "$folder/cache$_.qcow2" -CacheMode $_ -SourceCacheMode $_ -PassThru
        Get-GuestHash $info.Path | Should -Be $sourceHash
    }

    It 'reads the source as -SourceFormat Raw whatever its magic' {
        Convert-VDisk $plain.Path "$folder/qcow2-bytes.raw" -SourceFormat Raw
        (Get-FileHash "$folder/qcow2-bytes.raw").Hash | Should -Be (Get-FileHash $plain.Path).Hash
    }

    It 'fails with NotAnImage when the source is not of -SourceFormat' {
        Convert-VDisk $source "$folder/notqcow2.raw" -SourceFormat Qcow2 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'NotAnImage' 'Convert-VDisk')
        "$folder/notqcow2.raw" | Should -Not -Exist
    }

    It 'writes progress with bytes, throughput and time left, and completes it' {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddCommand('Import-Module').AddParameter('Name', (Get-Module VDisk).Path).AddStatement()
            $null = $ps.AddCommand('Convert-VDisk').AddParameter('Path', $source).AddParameter('DestinationPath', "$folder/progress.qcow2")
            $null = $ps.Invoke()
            $ps.Streams.Error | Should -BeNullOrEmpty
            $records = @($ps.Streams.Progress | Where-Object Activity -EQ 'Convert-VDisk')
            $records[-1].RecordType | Should -Be 'Completed'
            $records[-1].StatusDescription | Should -Match '^Converting source\.raw to progress\.qcow2: 16 MiB of 16 MiB, [\d.]+ MiB/s$'
            $records[-1].PercentComplete | Should -Be 100
        } finally {
            $ps.Dispose()
        }
    }
}

Describe 'Convert-VDisk -BackingPath' {
    BeforeAll {
        $folder = New-TestFolder
        $null = New-Item -ItemType Directory "$folder/templates", "$folder/vms"
        # The template holds 0x5a at 0-1 MiB and 4-5 MiB; the full disk changes 4-5 MiB and adds 7-8 MiB.
        $template = New-PatternImage "$folder/templates/base.raw" 8MB 0, 4MB
        $full = New-PatternImage "$folder/full.raw" 8MB 0, 4MB
        Set-FilePattern $full 4MB 1MB 0x6b
        Set-FilePattern $full 7MB 1MB 0x6b
        Push-Location -LiteralPath $folder
    }
    AfterAll { Pop-Location }

    It 'writes an overlay holding only what differs from the backing image' {
        $info = Convert-VDisk full.raw vms/web01.qcow2 -BackingPath templates/base.raw -PassThru
        $info.BackingPath | Should -Be '../templates/base.raw'
        $info.BackingFormat | Should -Be 'Raw'
        $info.ChainDepth | Should -Be 1
        (Get-VDiskChain vms/web01.qcow2)[0].AllocatedBytes | Should -Be 2MB
        (Compare-VDisk vms/web01.qcow2 full.raw).Equal | Should -BeTrue
    }

    It 'stores a backing path typed absolute as absolute, with -BackingFormat' {
        $info = Convert-VDisk full.raw vms/abs.qcow2 -BackingPath $template -BackingFormat Raw -PassThru
        $info.BackingPath | Should -Be $template
        $info.BackingFormat | Should -Be 'Raw'
    }

    It 'fails with InvalidArgument for -BackingFormat without -BackingPath' {
        { Convert-VDisk full.raw vms/nobacking.qcow2 -BackingFormat Raw } |
            Should -Throw -ErrorId (Get-ErrorId 'InvalidArgument' 'Convert-VDisk')
        "$folder/vms/nobacking.qcow2" | Should -Not -Exist
    }

    It 'fails with InvalidArgument for a raw output with a backing file' {
        Convert-VDisk full.raw vms/flat.raw -BackingPath templates/base.raw -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'Convert-VDisk')
        "$folder/vms/flat.raw" | Should -Not -Exist
    }

    It 'fails with FileNotFound when the backing image does not exist' {
        Convert-VDisk full.raw vms/orphan.qcow2 -BackingPath templates/none.qcow2 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Convert-VDisk')
        "$folder/vms/orphan.qcow2" | Should -Not -Exist
    }

    It 'stops with NotFileSystemPath for a -BackingPath of another provider' {
        { Convert-VDisk full.raw vms/env.qcow2 -BackingPath Env:/PATH } |
            Should -Throw -ErrorId (Get-ErrorId 'NotFileSystemPath' 'Convert-VDisk')
    }
}

Describe 'Convert-VDisk errors' {
    BeforeEach {
        $folder = New-TestFolder
        $source = New-PatternImage "$folder/disk.raw" 4MB 0
        $qcow2 = (Convert-VDisk $source "$folder/disk.qcow2" -PassThru).Path
        $qcow2Hash = (Get-FileHash -LiteralPath $qcow2).Hash
    }

    It 'FileNotFound for a missing source (<Parameter>), with its full path as target' -ForEach @{ Parameter = 'Path' }, @{ Parameter = 'LiteralPath' } {
        $arguments = @{ $Parameter = "$folder/none.qcow2"; DestinationPath = "$folder/out.raw" }
        Convert-VDisk @arguments -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Convert-VDisk')
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].TargetObject | Should -Be "$folder/none.qcow2"
        "$folder/out.raw" | Should -Not -Exist
    }

    It 'FileNotFound when the destination folder does not exist' {
        Convert-VDisk $source "$folder/missing/out.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Convert-VDisk')
    }

    It 'FileExists for an existing destination, left untouched' {
        Convert-VDisk $source $qcow2 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileExists' 'Convert-VDisk')
        $err[0].CategoryInfo.Category | Should -Be 'ResourceExists'
        $err[0].TargetObject | Should -Be $qcow2
        (Get-FileHash -LiteralPath $qcow2).Hash | Should -Be $qcow2Hash
    }

    It 'DestinationIsSource when <Name>, even with -Force' -ForEach @(
        @{ Name = 'the output named after the input is the input'; Arguments = @{ DestinationFormat = 'Qcow2' } }
        @{ Name = '-DestinationPath is the input'; Arguments = @{ DestinationPath = 'disk.qcow2' } }
    ) {
        Push-Location -LiteralPath $folder
        try { Convert-VDisk -Path disk.qcow2 @Arguments -Force -ErrorVariable err -ErrorAction SilentlyContinue } finally { Pop-Location }
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'DestinationIsSource' 'Convert-VDisk')
        $err[0].CategoryInfo.Category | Should -Be 'InvalidArgument'
        $err[0].TargetObject | Should -Be $qcow2
        (Get-FileHash -LiteralPath $qcow2).Hash | Should -Be $qcow2Hash
    }

    It 'AmbiguousDestination for one -DestinationPath and several inputs (<Name>), converting none' -ForEach @(
        @{ Name = 'a wildcard'; Run = { Convert-VDisk -Path "$folder/disk.*" -DestinationPath "$folder/one.vdi" } }
        @{ Name = 'the pipeline'; Run = { Get-ChildItem -LiteralPath $folder | Convert-VDisk -DestinationPath "$folder/one.vdi" } }
    ) {
        $thrown = $Run | Should -Throw -ErrorId (Get-ErrorId 'AmbiguousDestination' 'Convert-VDisk') -PassThru
        $thrown.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $thrown.Exception.Message | Should -Match '2 images'
        "$folder/one.vdi" | Should -Not -Exist
        Get-FolderNames $folder | Should -Be @('disk.qcow2', 'disk.raw')
    }

    It 'InvalidArgument, before reading any input, for <Name>' -ForEach @(
        @{ Name = '-Compress with a raw output'; Arguments = @{ DestinationPath = 'out.raw'; Compress = $true } }
        @{ Name = '-Compress with a VDI output'; Arguments = @{ DestinationFormat = 'Vdi'; Compress = $true } }
        @{ Name = '-ClusterSizeBytes with a VMDK output'; Arguments = @{ DestinationPath = 'out.vmdk'; ClusterSizeBytes = 4096 } }
        @{ Name = '-CompressionType with a VMDK output'; Arguments = @{ DestinationPath = 'out.vmdk'; Compress = $true; CompressionType = 'Zstd' } }
        @{ Name = 'a VDI -Subformat with a qcow2 output'; Arguments = @{ DestinationPath = 'out.qcow2'; Subformat = 'Static' } }
        @{ Name = 'a VMDK -Subformat with a VDI output'; Arguments = @{ DestinationPath = 'out.vdi'; Subformat = 'MonolithicFlat' } }
        @{ Name = 'a -SparseThresholdBytes beyond the largest disk'; Arguments = @{ DestinationPath = 'out.qcow2'; SparseThresholdBytes = [ulong]::MaxValue } }
    ) {
        Push-Location -LiteralPath $folder
        try {
            { Convert-VDisk -Path none.raw @Arguments } | Should -Throw -ErrorId (Get-ErrorId 'InvalidArgument' 'Convert-VDisk')
        } finally { Pop-Location }
        Get-FolderNames $folder | Should -Be @('disk.qcow2', 'disk.raw')
    }

    It 'InvalidArgument from the engine for a sparse threshold that is not a multiple of 512' {
        Convert-VDisk $source "$folder/out.qcow2" -SparseThresholdBytes 1000 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'Convert-VDisk')
        $err[0].Exception.Message | Should -Match '1000'
        "$folder/out.qcow2" | Should -Not -Exist
    }

    It 'SnapshotNotFound for a -Snapshot the image does not have' {
        Convert-VDisk $qcow2 "$folder/snap.raw" -Snapshot nightly -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'SnapshotNotFound' 'Convert-VDisk')
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].TargetObject | Should -Be $qcow2
        $err[0].Exception.Message | Should -Match 'nightly'
        "$folder/snap.raw" | Should -Not -Exist
    }

    It 'FileNotFound, not SnapshotNotFound, for a missing source with -Snapshot' {
        Convert-VDisk -LiteralPath "$folder/none.qcow2" -DestinationPath "$folder/snap.raw" -Snapshot nightly -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Convert-VDisk')
    }

    It 'InvalidArgument for -Snapshot on a format without internal snapshots' {
        Convert-VDisk $source "$folder/snap.qcow2" -Snapshot 1 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'Convert-VDisk')
    }

    It 'BackingFileMissing for a source whose backing file is gone' {
        $null = New-VDisk "$folder/gone.qcow2" 4MB
        $null = New-VDisk "$folder/orphan.qcow2" -BackingPath "$folder/gone.qcow2"
        Remove-Item -LiteralPath "$folder/gone.qcow2"
        Convert-VDisk "$folder/orphan.qcow2" "$folder/orphan.raw" -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BackingFileMissing' 'Convert-VDisk')
        "$folder/orphan.raw" | Should -Not -Exist
    }

    It 'NotFileSystemPath for a destination of another provider' {
        Convert-VDisk $source 'Env:/VDISK_OUT' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'NotFileSystemPath' 'Convert-VDisk')
    }

    It 'stops the pipeline with -ErrorAction Stop' {
        { Convert-VDisk $source $qcow2 -ErrorAction Stop } | Should -Throw -ErrorId (Get-ErrorId 'FileExists' 'Convert-VDisk')
    }
}

Describe 'Convert-VDisk stopped with Ctrl+C' {
    It 'stops a long conversion promptly, leaves no output and the source untouched' {
        $folder = New-TestFolder
        $source = New-PatternImage "$folder/big.raw" 64GB 0
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddCommand('Import-Module').AddParameter('Name', (Get-Module VDisk).Path).AddStatement()
            # -SparseThresholdBytes 0 makes the engine write all 64 GiB, so it is still running when stopped.
            $null = $ps.AddCommand('Convert-VDisk').AddParameter('Path', $source).AddParameter('DestinationPath', "$folder/big.qcow2").AddParameter('SparseThresholdBytes', 0)
            $elapsed = Stop-AfterProgress $ps 'Convert-VDisk'
            $elapsed.TotalSeconds | Should -BeLessThan 10
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
            Get-FolderNames $folder | Should -Be @('big.raw')
            (Get-Item -LiteralPath $source).Length | Should -Be 64GB
        } finally {
            $ps.Dispose()
        }
    }
}

Describe 'Convert-VDisk outputs, checked by qemu-img' {
    BeforeAll {
        $folder = New-TestFolder
        Push-Location -LiteralPath $folder
        if (Get-Command qemu-img -CommandType Application -ErrorAction Ignore) {
            # The source: a qcow2 overlay made by qemu-img on a qemu-made base, with data in both layers, a zeroed
            # range over base data, and a write that is not sector-aligned.
            $null = Invoke-QemuImg @('create', '-q', '-f', 'qcow2', 'base.qcow2', '24M')
            Invoke-QemuIo base.qcow2 'write -P 0x11 0 4M', 'write -P 0x22 20M 4M'
            $null = Invoke-QemuImg @('create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', 'source.qcow2')
            Invoke-QemuIo source.qcow2 'write -P 0x33 1M 1M', 'write -z 20M 1M', 'write -P 0x44 12M 64k', 'write -P 0x55 8389120 1000'
        }
    }
    AfterAll { Pop-Location }

    It '<Name>: qemu-img compare finds it identical and qemu-img check clean' -Skip:$SkipQemu -ForEach @(
        @{ Name = 'qcow2 -> raw'; Arguments = @{ DestinationPath = 'out.raw' } }
        @{ Name = 'qcow2 -> qcow2'; Arguments = @{ DestinationPath = 'out.qcow2' } }
        @{ Name = 'qcow2 -> qcow2, 512-byte clusters'; Arguments = @{ DestinationPath = 'out.qcow2'; ClusterSizeBytes = 512 } }
        @{ Name = 'qcow2 -> qcow2, metadata preallocation'; Arguments = @{ DestinationPath = 'out.qcow2'; Preallocation = 'Metadata' } }
        @{ Name = 'qcow2 -> compressed qcow2 (zlib)'; Arguments = @{ DestinationPath = 'out.qcow2'; Compress = $true } }
        @{ Name = 'qcow2 -> compressed qcow2 (zstd)'; Arguments = @{ DestinationPath = 'out.qcow2'; Compress = $true; CompressionType = 'Zstd' } }
        @{ Name = 'qcow2 -> overlay on the base (-BackingPath)'; Arguments = @{ DestinationPath = 'out.qcow2'; BackingPath = 'base.qcow2' } }
        @{ Name = 'qcow2 -> vmdk monolithicSparse'; Arguments = @{ DestinationPath = 'out.vmdk' } }
        @{ Name = 'qcow2 -> vmdk streamOptimized (-Compress)'; Arguments = @{ DestinationPath = 'out.vmdk'; Compress = $true } }
        @{ Name = 'qcow2 -> vmdk twoGbMaxExtentFlat'; Arguments = @{ DestinationPath = 'out.vmdk'; Subformat = 'TwoGbMaxExtentFlat' } }
        @{ Name = 'qcow2 -> vdi static'; Arguments = @{ DestinationPath = 'out.vdi'; Subformat = 'Static' } }
    ) {
        Assert-QemuImg
        $info = Convert-VDisk -Path source.qcow2 @Arguments -Force -PassThru -ErrorAction Stop
        $null = Invoke-QemuImg @('compare', 'source.qcow2', $info.Path)
        if ($info.Format -ne 'Raw') {
            $check = Get-QemuCheck $info.Path
            $check.'check-errors' | Should -Be 0
            $check.corruptions | Should -BeIn @($null, 0)
            $check.leaks | Should -BeIn @($null, 0)
        }
        $qemu = Get-QemuInfo $info.Path
        $qemu.format | Should -Be $info.Format.ToString().ToLowerInvariant()
        if ($Arguments['BackingPath']) {
            $qemu.'backing-filename' | Should -Be 'base.qcow2'
            $flattened = Convert-VDisk source.qcow2 flattened.qcow2 -Force -PassThru
            $qemu.'actual-size' | Should -BeLessThan ($flattened.FileSize - 4MB) -Because 'the base data stays in the base'
        }
        if ($Arguments['CompressionType']) { $qemu.'format-specific'.data.'compression-type' | Should -Be 'zstd' }
    }

    It 'reads what qemu-img writes: <Name>' -Skip:$SkipQemu -ForEach @(
        @{ Name = 'VMware -> KVM (streamOptimized vmdk)'; Format = 'vmdk'; Options = 'subformat=streamOptimized' }
        @{ Name = 'VMware -> KVM (twoGbMaxExtentSparse vmdk)'; Format = 'vmdk'; Options = 'subformat=twoGbMaxExtentSparse' }
        @{ Name = 'VirtualBox -> KVM (vdi)'; Format = 'vdi'; Options = 'static=off' }
    ) {
        Assert-QemuImg
        $null = Invoke-QemuImg @('convert', '-O', $Format, '-o', $Options, 'source.qcow2', "byqemu.$Format")
        Convert-VDisk "byqemu.$Format" byqemu.qcow2 -Force -ErrorAction Stop
        $null = Invoke-QemuImg @('compare', "byqemu.$Format", 'byqemu.qcow2')
    }

    It 'converts an internal snapshot made by qemu-img, by name and by id, as qemu-img convert -l does' -Skip:$SkipQemu {
        Assert-QemuImg
        $null = Invoke-QemuImg @('convert', '-O', 'qcow2', 'source.qcow2', 'vm.qcow2')
        $null = Invoke-QemuImg @('snapshot', '-c', 'before-upgrade', 'vm.qcow2')
        Invoke-QemuIo vm.qcow2 'write -P 0x66 2M 2M'
        $null = Invoke-QemuImg @('convert', '-l', 'snapshot.name=before-upgrade', '-O', 'raw', 'vm.qcow2', 'expected.raw')

        Convert-VDisk vm.qcow2 by-name.raw -Snapshot before-upgrade -ErrorAction Stop
        Convert-VDisk vm.qcow2 by-id.raw -Snapshot 1 -ErrorAction Stop
        (Get-FileHash by-name.raw).Hash | Should -Be (Get-FileHash expected.raw).Hash
        (Get-FileHash by-id.raw).Hash | Should -Be (Get-FileHash expected.raw).Hash
        (Compare-VDisk vm.qcow2 by-name.raw -Quiet) | Should -BeFalse -Because 'the image changed after the snapshot'

        Convert-VDisk vm.qcow2 none.raw -Snapshot after-upgrade -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'SnapshotNotFound' 'Convert-VDisk')
        $err[0].Exception.Message | Should -Match 'before-upgrade'
    }
}

Describe 'Convert-VDisk and images a VM has open' {
    BeforeEach {
        $folder = New-TestFolder
        Push-Location -LiteralPath $folder
    }
    AfterEach { Pop-Location }

    It 'refuses an image qemu holds for writing with ImageInUse, while Get-VDisk still reads it' -Skip:$SkipQemu {
        Assert-QemuImg
        $null = Invoke-QemuImg @('create', '-q', '-f', 'qcow2', 'running.qcow2', '8M')
        # qemu-io keeps the image open for writing, with QEMU's locks, as a running VM does; its first command's
        # report means the image is open and locked.
        # (stdbuf: qemu-io's stdout is a pipe here, and the report must not wait in a buffer until it exits.)
        $start = [System.Diagnostics.ProcessStartInfo]::new('stdbuf')
        foreach ($argument in '-oL', 'qemu-io', '-f', 'qcow2', '-c', 'write -P 1 0 4k', '-c', 'sleep 20000', (Join-Path $folder 'running.qcow2')) { $start.ArgumentList.Add($argument) }
        $start.RedirectStandardOutput = $true
        $holder = [System.Diagnostics.Process]::Start($start)
        try {
            $holder.StandardOutput.ReadLine() | Should -Match '^wrote'
            Convert-VDisk running.qcow2 copy.raw -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageInUse' 'Convert-VDisk')
            $err[0].CategoryInfo.Category | Should -Be 'ResourceUnavailable'
            $err[0].TargetObject | Should -Be (Join-Path $folder 'running.qcow2')
            'copy.raw' | Should -Not -Exist
            (Get-VDisk running.qcow2).VirtualSize | Should -Be 8MB
        }
        finally {
            $holder.Kill()
            $holder.WaitForExit()
        }
    }
}
