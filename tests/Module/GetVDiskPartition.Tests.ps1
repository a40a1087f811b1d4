# Get-VDiskPartition: VDiskPartition objects equal to sfdisk --json's partitions (a GPT and a DOS label with logical
# partitions, real file systems inside), through qcow2, an overlay and a backup point, while QEMU holds the image;
# a damaged primary GPT (backup used, warning), both headers damaged (CorruptImage, the pipeline goes on), a
# whole-disk file system (partition 0), pipeline binding and the table view.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
    $SkipPartitionTools = $env:CI -ne 'true' -and @(Get-Command sfdisk, mkfs.ext4, mkfs.vfat -CommandType Application -ErrorAction Ignore).Count -lt 3
    if ($SkipPartitionTools) { Write-Warning 'sfdisk/mkfs.ext4/mkfs.vfat missing: SKIPPING Get-VDiskPartition tests (install fdisk, e2fsprogs, dosfstools; in CI they fail instead).' }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    function New-GptDisk([string] $Path) {
        & truncate -s 64M $Path
        "label: gpt`nstart=2048, size=20480, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=`"EFI System Partition`"`nstart=22528, size=81920, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=`"root`"`n" |
            & sfdisk -q $Path
        & mkfs.vfat --offset 2048 $Path 10240 2>&1 | Out-Null
        & mkfs.ext4 -q -F -E "offset=$(22528 * 512)" $Path 40M
        if ($LASTEXITCODE) { throw 'mkfs.ext4 failed' }
    }

    function Get-SfdiskPartitions([string] $Path) {
        ((& sfdisk --json $Path 2>$null) -join "`n" | ConvertFrom-Json).partitiontable
    }
}

Describe 'Get-VDiskPartition' -Skip:($SkipQemu -or $SkipPartitionTools) {
    BeforeAll {
        $folder = New-TestFolder
        $gpt = "$folder/gpt.raw"
        New-GptDisk $gpt
        $qcow2 = "$folder/gpt.qcow2"
        Invoke-QemuImg @('convert', '-q', '-O', 'qcow2', $gpt, $qcow2) | Out-Null
        $dos = "$folder/dos.raw"
        & truncate -s 64M $dos
        "label: dos`nstart=2048, size=20480, type=83, bootable`nstart=22528, size=81920, type=5`nstart=24576, size=20480, type=82`nstart=47104, size=40960, type=83`n" | & sfdisk -q $dos
        & mkfs.ext4 -q -F -E "offset=$(47104 * 512)" $dos 20M
    }

    It 'lists a GPT as sfdisk --json does, with the file systems inside' {
        $expected = Get-SfdiskPartitions $gpt
        $parts = @(Get-VDiskPartition $qcow2)
        $parts.Count | Should -Be 2
        for ($i = 0; $i -lt 2; $i++) {
            $e = $expected.partitions[$i]
            $p = $parts[$i]
            $p.Path | Should -Be $qcow2
            $p.Number | Should -Be ($i + 1)
            $p.Start | Should -Be ($e.start * 512)
            $p.Size | Should -Be ($e.size * 512)
            $p.End | Should -Be ($p.Start + $p.Size)
            $p.Type | Should -Be $e.type
            $p.Name | Should -Be $e.name
            $p.PartitionGuid.ToString().ToUpperInvariant() | Should -Be $e.uuid
            $p.TableType | Should -Be 'GPT'
            $p.GptHeader | Should -Be 'Primary'
        }
        $parts.TypeName | Should -Be @('EFI System', 'Linux filesystem')
        $parts.FileSystem | Should -Be @('fat16', 'ext4')
        $parts[1].FileSystemDetails | Should -Match 'has_journal'
    }

    It 'lists a DOS label with its extended and logical partitions' {
        $expected = Get-SfdiskPartitions $dos
        $parts = @(Get-VDiskPartition -LiteralPath $dos)
        $parts.Number | Should -Be @(1, 2, 5, 6)
        $parts.Start | Should -Be @($expected.partitions | ForEach-Object { $_.start * 512 })
        $parts.Size | Should -Be @($expected.partitions | ForEach-Object { $_.size * 512 })
        $parts.Type | Should -Be @('0x83', '0x05', '0x82', '0x83')
        $parts[0].Bootable | Should -BeTrue
        $parts[1].IsExtended | Should -BeTrue
        $parts[3].FileSystem | Should -Be 'ext4'
        $parts.TableType | Select-Object -Unique | Should -Be 'MBR'
    }

    It 'reads through an overlay and a backup point, and binds from Get-ChildItem' {
        $overlay = (New-VDisk -Path "$folder/overlay.qcow2" -BackingPath $qcow2).Path
        (Get-VDiskPartition $overlay).FileSystem | Should -Be @('fat16', 'ext4')
        $point = Backup-VDisk $qcow2 -Destination "$folder/backups"
        ($point | Get-VDiskPartition).Start | Should -Be @(1MB, (22528 * 512))
        (Get-ChildItem $folder -Filter 'gpt.*' | Get-VDiskPartition).Count | Should -Be 4
    }

    It 'lists the disk of a running VM (QEMU holds its locks)' {
        $holder = Start-QemuHolder $qcow2 'qcow2'
        try {
            (Get-VDiskPartition $qcow2 -ErrorAction Stop).Count | Should -Be 2
        } finally {
            Stop-QemuHolder $holder
        }
    }

    It 'uses the backup GPT header when the primary is damaged, with a warning' {
        $damaged = "$folder/damaged.raw"
        Copy-Item $gpt $damaged
        Set-FileBytes $damaged (512 + 40) ([byte[]](1, 2, 3, 4))
        $parts = @(Get-VDiskPartition $damaged -WarningVariable warnings -WarningAction SilentlyContinue)
        $parts.Count | Should -Be 2
        $parts.GptHeader | Select-Object -Unique | Should -Be 'Backup'
        $warnings | Should -Match 'primary GPT header at LBA 1 is not valid'
    }

    It 'reports both GPT headers damaged as CorruptImage naming the image, and goes on with the next image' {
        $broken = "$folder/broken.raw"
        Copy-Item $gpt $broken
        Set-FileBytes $broken (512 + 40) ([byte[]](1, 2, 3, 4))
        Set-FileBytes $broken (64MB - 512) ([byte[]]::new(512))
        $parts = @(Get-VDiskPartition $broken, $qcow2 -ErrorVariable failure -ErrorAction SilentlyContinue)
        $parts.Count | Should -Be 2
        $failure.Count | Should -Be 1
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId CorruptImage Get-VDiskPartition)
        $failure[0].TargetObject | Should -Be $broken
        $failure[0].Exception.Message | Should -Match 'GPT is damaged'
    }

    It 'reports a whole-disk file system as partition 0' {
        $whole = "$folder/whole.raw"
        & mkfs.ext4 -q -F $whole 8M
        $part = Get-VDiskPartition $whole
        $part.Number | Should -Be 0
        $part.Start | Should -Be 0
        $part.Size | Should -Be 8MB
        $part.TableType | Should -Be 'None'
        $part.FileSystem | Should -Be 'ext4'
    }

    It 'shows a table for people' {
        $text = Get-VDiskPartition $qcow2 | Out-String
        $text | Should -Match 'Linux filesystem'
        $text | Should -Match '40 MiB'
    }

    It 'reports a missing file as FileNotFound' {
        Get-VDiskPartition "$folder/none.qcow2" -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId FileNotFound Get-VDiskPartition)
    }
}
