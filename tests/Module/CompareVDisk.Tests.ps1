# Compare-VDisk: equal and different images across formats and chains, sizes, -Strict, -Quiet, pipeline input,
# error ids, the table view; and agreement with `qemu-img compare` (exit code 0 equal, 1 different).

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')

    # Image pairs made by qemu-img / qemu-io, compared with and without -Strict, and the answer both tools must
    # give. Strict mode is only asked where qemu-img's block status and VDisk's (data or not) mean the same thing.
    $pairs = @(
        @{ Name = 'the same content in qcow2 and raw'; First = 'data.qcow2'; Second = 'data.raw'; Strict = $false; Equal = $true }
        @{ Name = 'content that differs in one byte'; First = 'data.qcow2'; Second = 'changed.qcow2'; Strict = $false; Equal = $false }
        @{ Name = 'content that differs in one byte'; First = 'data.qcow2'; Second = 'changed.qcow2'; Strict = $true; Equal = $false }
        @{ Name = 'a qcow2 copy of the same layout'; First = 'data.qcow2'; Second = 'copy.qcow2'; Strict = $true; Equal = $true }
        @{ Name = 'an overlay and its flattened copy'; First = 'overlay.qcow2'; Second = 'flat.qcow2'; Strict = $false; Equal = $true }
        @{ Name = 'a larger image whose extra part reads as zeroes'; First = 'data.qcow2'; Second = 'bigger.qcow2'; Strict = $false; Equal = $true }
        @{ Name = 'a larger image whose extra part reads as zeroes'; First = 'data.qcow2'; Second = 'bigger.qcow2'; Strict = $true; Equal = $false }
        @{ Name = 'a larger image with data in its extra part'; First = 'bigger-data.qcow2'; Second = 'data.qcow2'; Strict = $false; Equal = $false }
        @{ Name = 'zeroes written vs never written'; First = 'empty.qcow2'; Second = 'zero-data.qcow2'; Strict = $false; Equal = $true }
        @{ Name = 'zeroes written vs never written'; First = 'empty.qcow2'; Second = 'zero-data.qcow2'; Strict = $true; Equal = $false }
    )
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
}

Describe 'Compare-VDisk results' {
    BeforeAll {
        $folder = New-TestFolder
        $data = New-PatternImage "$folder/data.raw" 8MB 0, 5MB
        $same = (Convert-VDisk $data "$folder/same.qcow2" -PassThru).Path
        $changed = New-PatternImage "$folder/changed.raw" 8MB 0, 5MB
        Set-FileBytes $changed 5300000 ([byte[]](1))
        $bigger = New-PatternImage "$folder/bigger.raw" 12MB 0, 5MB
        $biggerData = New-PatternImage "$folder/bigger-data.raw" 12MB 0, 5MB, 10MB
        $zeroData = New-PatternImage "$folder/zero-data.raw" 8MB 0, 5MB
        Set-FilePattern $zeroData 2MB 1MB 0 # explicit zeroes: allocated in the file, read as zero
    }

    It 'finds images of different formats with the same content equal' {
        $result = Compare-VDisk $data $same
        $result | Should -BeOfType VDisk.PowerShell.VDiskComparison
        $result.Equal | Should -BeTrue
        $result.Path | Should -Be $data
        $result.DifferencePath | Should -Be $same
        $result.FirstDifferenceOffset | Should -BeNullOrEmpty
        $result.AllocationDifferenceOffset | Should -BeNullOrEmpty
        $result.SizeDiffers | Should -BeFalse
        $result.Reason | Should -BeNullOrEmpty
    }

    It 'reports the exact offset of the first difference' {
        $result = Compare-VDisk $same $changed
        $result.Equal | Should -BeFalse
        $result.FirstDifferenceOffset | Should -Be 5300000
        $result.Reason | Should -Match '5300000'
    }

    It 'finds a larger image equal when its extra part reads as zeroes, and notes the sizes differ' {
        $result = Compare-VDisk $data $bigger
        $result.Equal | Should -BeTrue
        $result.SizeDiffers | Should -BeTrue
    }

    It 'finds a larger image different when its extra part holds data' {
        $result = Compare-VDisk $biggerData $data
        $result.Equal | Should -BeFalse
        $result.FirstDifferenceOffset | Should -Be 10MB
        $result.Reason | Should -Match 'beyond the end'
    }

    It 'requires equal sizes with -Strict' {
        $result = Compare-VDisk $data $bigger -Strict
        $result.Equal | Should -BeFalse
        $result.SizeDiffers | Should -BeTrue
        $result.Reason | Should -Match 'sizes differ'
    }

    It 'requires the same allocation with -Strict' {
        (Compare-VDisk $data $zeroData).Equal | Should -BeTrue
        $result = Compare-VDisk $data $zeroData -Strict
        $result.Equal | Should -BeFalse
        $result.AllocationDifferenceOffset | Should -Be 2MB
    }

    It 'writes only a Boolean with -Quiet' {
        $equal = Compare-VDisk $data $same -Quiet
        $equal | Should -BeOfType bool
        $equal | Should -BeTrue
        Compare-VDisk $data $changed -Quiet | Should -BeFalse
    }

    It 'takes formats with -FirstFormat and -SecondFormat' {
        # same.qcow2 read as raw is its qcow2 bytes, not the guest content.
        (Compare-VDisk $same $data -FirstFormat Raw).Equal | Should -BeFalse
        (Compare-VDisk $same $data -FirstFormat Qcow2 -SecondFormat Raw).Equal | Should -BeTrue
    }

    It 'compares through a backing chain' {
        $null = New-VDisk "$folder/overlay.qcow2" -BackingPath $data
        (Compare-VDisk "$folder/overlay.qcow2" $same).Equal | Should -BeTrue
    }
}

Describe 'Compare-VDisk input' {
    BeforeAll {
        $folder = New-TestFolder
        $null = New-Item -ItemType Directory "$folder/copies"
        $original = New-PatternImage "$folder/original.raw" 4MB 1MB
        $null = Convert-VDisk $original "$folder/copies/a.qcow2"
        $null = Convert-VDisk $original "$folder/copies/b.vdi"
        $null = New-PatternImage "$folder/copies/c.raw" 4MB 2MB
    }
    AfterEach { Pop-Location -ErrorAction Ignore }

    It 'compares every item from Get-ChildItem with -DifferencePath' {
        $results = Get-ChildItem -LiteralPath "$folder/copies" | Compare-VDisk -DifferencePath $original
        $results.Path | Should -Be @("$folder/copies/a.qcow2", "$folder/copies/b.vdi", "$folder/copies/c.raw")
        $results.Equal | Should -Be @($true, $true, $false)
        $results.DifferencePath | Should -Be @($original, $original, $original)
    }

    It 'expands wildcards in -Path and takes -DifferencePath by position, relative to the location' {
        Push-Location -LiteralPath "$folder/copies"
        (Compare-VDisk '*.qcow2' ../original.raw -Quiet) | Should -Be @($true)
    }

    It 'takes -DifferencePath literally' {
        Copy-Item -LiteralPath $original -Destination "$folder/original[1].raw"
        (Compare-VDisk "$folder/copies/a.qcow2" "$folder/original[1].raw").Equal | Should -BeTrue
    }

    It 'goes on after an input fails: one error, the other results written' {
        $results = "$folder/copies/a.qcow2", "$folder/copies/none.qcow2", "$folder/copies/c.raw" |
            Compare-VDisk -DifferencePath $original -ErrorVariable err -ErrorAction SilentlyContinue
        $results.Equal | Should -Be @($true, $false)
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Compare-VDisk')
    }
}

Describe 'Compare-VDisk errors' {
    BeforeAll {
        $folder = New-TestFolder
        $image = New-PatternImage "$folder/image.raw" 1MB
    }

    It 'FileNotFound for a missing first image, with its path as target' {
        Compare-VDisk "$folder/none.qcow2" $image -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Compare-VDisk')
        $err[0].TargetObject | Should -Be "$folder/none.qcow2"
    }

    It 'FileNotFound for a missing -DifferencePath, with its path as target; no Boolean with -Quiet' {
        Compare-VDisk $image "$folder/none.qcow2" -Quiet -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Compare-VDisk')
        $err[0].TargetObject | Should -Be "$folder/none.qcow2"
    }

    It 'CorruptImage for a damaged qcow2 image' {
        $null = New-VDisk "$folder/corrupt.qcow2" 1MB
        Set-FileBytes "$folder/corrupt.qcow2" 20 ([byte[]](0, 0, 0, 30)) # cluster_bits 30
        Compare-VDisk "$folder/corrupt.qcow2" $image -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'CorruptImage' 'Compare-VDisk')
    }

    It 'NotAnImage when an image is not of -SecondFormat' {
        Compare-VDisk $image $image -SecondFormat Qcow2 -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'NotAnImage' 'Compare-VDisk')
    }

    It 'stops with NotFileSystemPath for a -DifferencePath of another provider' {
        { Compare-VDisk $image 'Env:/PATH' } | Should -Throw -ErrorId (Get-ErrorId 'NotFileSystemPath' 'Compare-VDisk')
    }

    It 'needs -DifferencePath' {
        (Get-Command Compare-VDisk).Parameters['DifferencePath'].Attributes.Where({ $_ -is [System.Management.Automation.ParameterAttribute] }).Mandatory |
            Should -Be @($true)
    }
}

Describe 'Compare-VDisk table view' {
    It 'shows the outcome, the offset and the file names' {
        $folder = New-TestFolder
        $a = New-PatternImage "$folder/a.raw" 2MB 0
        $b = New-PatternImage "$folder/b.raw" 2MB 1MB
        $text = Compare-VDisk $a $b | Format-Table | Out-String -Width 250
        $text | Should -Match 'Equal\s+FirstDifference\s+SizeDiffers\s+Name\s+DifferenceName\s+Reason'
        $text | Should -Match 'False\s+0\s+False\s+a\.raw\s+b\.raw\s+content differs at offset 0'
    }
}

Describe 'Compare-VDisk agrees with qemu-img compare' {
    BeforeAll {
        $folder = New-TestFolder
        Push-Location -LiteralPath $folder
        if (Get-Command qemu-img -CommandType Application -ErrorAction Ignore) {
            foreach ($name in 'data', 'changed', 'empty', 'zero-data') { $null = Invoke-QemuImg @('create', '-q', '-f', 'qcow2', "$name.qcow2", '8M') }
            $null = Invoke-QemuImg @('create', '-q', '-f', 'qcow2', 'bigger.qcow2', '12M')
            $null = Invoke-QemuImg @('create', '-q', '-f', 'qcow2', 'bigger-data.qcow2', '12M')
            foreach ($name in 'data', 'changed', 'bigger', 'bigger-data') { Invoke-QemuIo "$name.qcow2" 'write -P 0x5a 0 3M', 'write -P 0x6b 5M 1M' }
            Invoke-QemuIo changed.qcow2 'write -P 0x01 3000001 1'
            Invoke-QemuIo bigger-data.qcow2 'write -P 0x7c 10M 4k'
            Invoke-QemuIo zero-data.qcow2 'write -P 0 1M 64k'
            $null = Invoke-QemuImg @('convert', '-O', 'raw', 'data.qcow2', 'data.raw')
            $null = Invoke-QemuImg @('convert', '-O', 'qcow2', 'data.qcow2', 'copy.qcow2')
            $null = Invoke-QemuImg @('create', '-q', '-f', 'qcow2', '-b', 'data.qcow2', '-F', 'qcow2', 'overlay.qcow2')
            Invoke-QemuIo overlay.qcow2 'write -P 0x22 1M 64k'
            $null = Invoke-QemuImg @('convert', '-O', 'qcow2', 'overlay.qcow2', 'flat.qcow2')
        }
    }
    AfterAll { Pop-Location }

    It '<Name>, strict <Strict>: equal <Equal>' -ForEach $pairs -Skip:$SkipQemu {
        Assert-QemuImg
        $mode = if ($Strict) { @('-s') } else { @() }
        $said = Invoke-QemuImg (@('compare') + $mode + @($First, $Second)) -AllowedExitCodes 0, 1
        $LASTEXITCODE | Should -Be ([int](-not $Equal)) -Because "qemu-img said: $($said -join ' ')"
        $result = Compare-VDisk $First $Second -Strict:$Strict -ErrorAction Stop
        $result.Equal | Should -Be $Equal
        Compare-VDisk $First $Second -Strict:$Strict -Quiet | Should -Be $Equal
        if (-not $Strict -and ($said -join "`n") -match 'Content mismatch at offset (\d+)') {
            # qemu-img names the 512-byte sector; VDisk the byte.
            [long]([math]::Floor($result.FirstDifferenceOffset / 512) * 512) | Should -Be ([long]$Matches[1])
        }
    }

    It 'fails like qemu-img (exit code 2) when an image is missing' -Skip:$SkipQemu {
        Assert-QemuImg
        $null = Invoke-QemuImg @('compare', 'data.qcow2', 'none.qcow2') -AllowedExitCodes 2
        Compare-VDisk data.qcow2 none.qcow2 -Quiet -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Compare-VDisk')
    }
}
