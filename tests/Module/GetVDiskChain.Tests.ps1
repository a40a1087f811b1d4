# Get-VDiskChain: layers top first, pipeline input, and broken chains (missing backing file, loop, too deep)
# as errors with stable ids that do not stop the rest of the pipeline.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    $folder = Join-Path $TestDrive 'chain'
    $null = New-Item -ItemType Directory -Path $folder, "$folder/overlays"
    # A raw base holding 1 MiB of data at its start, a qcow2 middle layer and a top layer in a subfolder.
    $null = New-VDisk -Path "$folder/base.img" -SizeBytes 8MB
    $data = [byte[]]::new(1MB)
    [Array]::Fill($data, [byte]0x5a)
    Set-FileBytes "$folder/base.img" 0 $data
    $null = New-VDisk -Path "$folder/middle.qcow2" -BackingPath "$folder/base.img"
    Push-Location -LiteralPath $folder
    try { $null = New-VDisk -Path 'overlays/top.qcow2' -BackingPath 'middle.qcow2' } finally { Pop-Location }
}

Describe 'Get-VDiskChain layers' {
    BeforeAll { $chain = Get-VDiskChain -Path "$folder/overlays/top.qcow2" }

    It 'returns one VDiskChainNode per layer, top first' {
        $chain | Should -HaveCount 3
        $chain[0] | Should -BeOfType VDisk.PowerShell.VDiskChainNode
        $chain.Depth | Should -Be @(0, 1, 2)
        $chain.Path | Should -Be @("$folder/overlays/top.qcow2", "$folder/middle.qcow2", "$folder/base.img")
        $chain.Format | Should -Be @('Qcow2', 'Qcow2', 'Raw')
    }

    It 'reports each layer''s backing name as stored and its recorded format' {
        $chain[0].BackingPath | Should -Be '../middle.qcow2'
        $chain[0].BackingFormat | Should -Be 'Qcow2'
        $chain[1].BackingPath | Should -Be "$folder/base.img"
        $chain[1].BackingFormat | Should -Be 'Raw'
        $chain[2].BackingPath | Should -BeNullOrEmpty
        $chain[2].BackingFormat | Should -BeNullOrEmpty
    }

    It 'reports sizes per layer' {
        $chain.VirtualSize | Should -Be @(8MB, 8MB, 8MB)
        $chain[2].FileSize | Should -BeGreaterOrEqual 1MB
        $chain[0].FileSize | Should -BeGreaterThan 0
    }

    It 'counts the guest bytes each layer holds itself' {
        $chain[0].AllocatedBytes | Should -Be 0
        $chain[1].AllocatedBytes | Should -Be 0
        $chain[2].AllocatedBytes | Should -Be 1MB
    }

    It 'returns a single layer for a standalone image' {
        $single = Get-VDiskChain -LiteralPath "$folder/base.img"
        $single | Should -HaveCount 1
        $single.Depth | Should -Be 0
    }
}

Describe 'Get-VDiskChain input' {
    AfterEach { Pop-Location -ErrorAction Ignore }

    It 'reads Get-ChildItem output and skips folders' {
        $nodes = Get-ChildItem -LiteralPath $folder | Get-VDiskChain -ErrorVariable err
        $err | Should -BeNullOrEmpty
        ($nodes | Where-Object Depth -EQ 0).Path | Sort-Object | Should -Be @("$folder/base.img", "$folder/middle.qcow2")
        $nodes | Should -HaveCount 3
    }

    It 'expands wildcards and resolves against the PowerShell location' {
        Push-Location -LiteralPath "$folder/overlays"
        (Get-VDiskChain -Path '*.qcow2').Path | Should -Be @("$folder/overlays/top.qcow2", "$folder/middle.qcow2", "$folder/base.img")
    }

    It 'takes -LiteralPath' {
        (Get-VDiskChain -LiteralPath "$folder/middle.qcow2") | Should -HaveCount 2
    }

    It 'reports FileNotFound for a missing image' {
        Get-VDiskChain -Path "$folder/none.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Get-VDiskChain')
    }
}

Describe 'Get-VDiskChain broken chains' {
    BeforeAll {
        $broken = Join-Path $TestDrive 'broken'
        $null = New-Item -ItemType Directory -Path $broken
    }

    It 'BackingFileMissing when a backing file was deleted, naming the chain' {
        $null = New-VDisk -Path "$broken/deleted.qcow2" -SizeBytes 1MB
        $null = New-VDisk -Path "$broken/mid.qcow2" -BackingPath "$broken/deleted.qcow2"
        $null = New-VDisk -Path "$broken/top.qcow2" -BackingPath "$broken/mid.qcow2"
        Remove-Item -LiteralPath "$broken/deleted.qcow2"

        Get-VDiskChain -LiteralPath "$broken/top.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BackingFileMissing' 'Get-VDiskChain')
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $err[0].TargetObject | Should -Be "$broken/mid.qcow2"
        $err[0].Exception.Message | Should -Match ([regex]::Escape("$broken/top.qcow2 -> $broken/mid.qcow2 -> $broken/deleted.qcow2"))
    }

    It 'BackingChainLoop for two images that back each other' {
        $null = New-VDisk -Path "$broken/b.qcow2" -SizeBytes 1MB
        $null = New-VDisk -Path "$broken/a.qcow2" -BackingPath "$broken/b.qcow2"
        # Recreate b on top of a: a -> b -> a.
        $null = New-VDisk -Path "$broken/b.qcow2" -BackingPath "$broken/a.qcow2" -Force -WarningAction SilentlyContinue

        Get-VDiskChain -LiteralPath "$broken/a.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BackingChainLoop' 'Get-VDiskChain')
        $err[0].CategoryInfo.Category | Should -Be 'InvalidData'
        $err[0].TargetObject | Should -Be "$broken/a.qcow2"
        Get-VDisk -LiteralPath "$broken/a.qcow2" -WarningVariable warned -WarningAction SilentlyContinue | Should -Not -BeNullOrEmpty
        $warned[0].Message | Should -Match 'loops'
    }

    It 'BackingChainTooDeep beyond 256 layers' {
        $deep = Join-Path $broken 'deep'
        $null = New-Item -ItemType Directory -Path $deep
        $null = New-VDisk -Path "$deep/L000.qcow2" -SizeBytes 1MB -ClusterSizeBytes 4096
        $null = New-VDisk -Path "$deep/L001.qcow2" -BackingPath "$deep/L000.qcow2" -ClusterSizeBytes 4096
        # Every further layer is L001 with the stored backing name "L000.qcow2" patched to its predecessor's.
        $template = [System.IO.File]::ReadAllBytes("$deep/L001.qcow2")
        $nameAt = [System.Text.Encoding]::ASCII.GetString($template).IndexOf('L000.qcow2')
        $nameAt | Should -BeGreaterThan 0
        foreach ($i in 2..260) {
            $bytes = $template.Clone()
            [System.Text.Encoding]::ASCII.GetBytes(('L{0:000}.qcow2' -f ($i - 1))).CopyTo($bytes, $nameAt)
            [System.IO.File]::WriteAllBytes(("$deep/L{0:000}.qcow2" -f $i), $bytes)
        }
        (Get-VDiskChain -LiteralPath "$deep/L200.qcow2") | Should -HaveCount 201

        Get-VDiskChain -LiteralPath "$deep/L260.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BackingChainTooDeep' 'Get-VDiskChain')
        $err[0].CategoryInfo.Category | Should -Be 'LimitsExceeded'
        $err[0].TargetObject | Should -Be "$deep/L260.qcow2"
    }

    It 'goes on with the next image after a broken chain' {
        $null = New-VDisk -Path "$broken/lost.qcow2" -SizeBytes 1MB
        $null = New-VDisk -Path "$broken/stray.qcow2" -BackingPath "$broken/lost.qcow2"
        Remove-Item -LiteralPath "$broken/lost.qcow2"
        $nodes = "$broken/stray.qcow2", "$folder/middle.qcow2" | Get-VDiskChain -ErrorVariable err -ErrorAction SilentlyContinue
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BackingFileMissing' 'Get-VDiskChain')
        $nodes.Path | Should -Be @("$folder/middle.qcow2", "$folder/base.img")
    }
}
