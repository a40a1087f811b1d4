# Get-VDiskMap: VDiskMapRange objects with qemu-img map's ranges and flags (a sparse image, a compressed one, a chain),
# pipeline binding, the table view and error ids.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    # qemu-img map's JSON and Get-VDiskMap's objects as comparable lines.
    function Get-QemuMapLines([string] $Path) {
        (Invoke-QemuImg @('map', '--output=json', $Path)) -join "`n" | ConvertFrom-Json |
            ForEach-Object { '{0} {1} {2} {3} {4} {5} {6}' -f $_.start, $_.length, $_.depth, $_.present, $_.zero, $_.data, $_.offset }
    }
    function Get-MapLines($Ranges) {
        $Ranges | ForEach-Object { '{0} {1} {2} {3} {4} {5} {6}' -f $_.Start, $_.Length, $_.Depth, $_.Present, $_.Zero, $_.Data, $_.HostOffset }
    }
}

Describe 'Get-VDiskMap' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $base = "$folder/base.qcow2"
        $null = New-VDisk -Path $base -SizeBytes 16MB
        Invoke-QemuIo $base @('write -P 0x11 0 1M', 'write -c -P 0x22 4M 128k', 'write -z 6M 64k')
        $top = (New-VDisk -Path "$folder/top.qcow2" -BackingPath $base).Path
        Invoke-QemuIo $top @('write -P 0x33 512k 1M')
        $sparse = "$folder/sparse.raw"
        Invoke-QemuImg @('create', '-q', '-f', 'raw', $sparse, '8M') | Out-Null
        Invoke-QemuIo $sparse @('write -P 0x44 2M 64k')
    }

    It 'gives qemu-img map''s ranges for <_>' -ForEach 'base.qcow2', 'top.qcow2', 'sparse.raw' {
        $path = Join-Path $folder $_
        $ranges = Get-VDiskMap -Path $path
        $ranges | Should -BeOfType VDisk.PowerShell.VDiskMapRange
        Get-MapLines $ranges | Should -Be @(Get-QemuMapLines $path)
        $ranges[0].Path | Should -Be $path
    }

    It 'says which layer decides (Depth) and marks compressed data' {
        $ranges = Get-VDiskMap $top
        ($ranges | Where-Object { $_.Depth -eq 0 -and $_.Data }).Start | Should -Be 512KB
        $compressed = $ranges | Where-Object Compressed
        $compressed.Start | Should -Be 4MB
        $compressed.Depth | Should -Be 1
        $compressed.HostOffset | Should -BeNullOrEmpty
        ($ranges | Measure-Object Length -Sum).Sum | Should -Be 16MB
    }

    It 'binds Get-ChildItem output and shows a table grouped by image' {
        $ranges = Get-ChildItem $folder -Filter '*.raw' | Get-VDiskMap
        ($ranges | Where-Object Data).HostOffset | Should -Contain 2MB
        $text = $ranges | Format-Table | Out-String -Width 200
        $text | Should -Match 'Image: .*sparse\.raw'
        $text | Should -Match '0x200000'
        $text | Should -Match '64 KiB'
    }

    It 'reports a missing backing file as BackingFileMissing' {
        $orphan = "$folder/orphan.qcow2"
        Invoke-QemuImg @('create', '-q', '-f', 'qcow2', '-u', '-b', 'gone.qcow2', '-F', 'qcow2', $orphan, '8M') | Out-Null
        Get-VDiskMap $orphan -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId BackingFileMissing Get-VDiskMap)
    }
}
