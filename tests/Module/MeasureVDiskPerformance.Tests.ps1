# Measure-VDiskPerformance: one VDiskPerformance per mode and pattern with consistent numbers and a table view; the
# scratch image in a folder removed after success, -WhatIf, Ctrl+C and SIGTERM; an existing image only read without
# -Force (sha256 unchanged), ImageHoldsData for writes, ImageInUse while qemu-io holds it; the other error ids.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    $cmdlet = 'Measure-VDiskPerformance'

    function Get-Entries([string] $Folder) { @(Get-ChildItem -LiteralPath $Folder -Force) }

    function New-DataImage([string] $Path) {
        $bytes = [byte[]]::new(4MB)
        [System.Random]::new(5).NextBytes($bytes)
        [System.IO.File]::WriteAllBytes($Path, $bytes)
        $Path
    }
}

Describe 'Measure-VDiskPerformance on a folder' {
    It 'writes one object per mode and pattern, in order, with consistent numbers, and removes the scratch image' {
        $folder = New-TestFolder
        $results = @(Measure-VDiskPerformance $folder -SizeBytes 8MB -CacheMode None, Unsafe -Count 300 -QueueDepth 4)
        $results.Count | Should -Be 8
        $results | Should -BeOfType VDisk.PowerShell.VDiskPerformance
        ($results | ForEach-Object { "$($_.Mode)/$($_.Pattern)" }) | Should -Be @(
            'None/RandomRead', 'None/RandomWrite', 'None/SequentialRead', 'None/SequentialWrite',
            'Unsafe/RandomRead', 'Unsafe/RandomWrite', 'Unsafe/SequentialRead', 'Unsafe/SequentialWrite')
        foreach ($r in $results) {
            $r.Operations | Should -Be 300
            $r.QueueDepth | Should -Be 4
            $r.IOPS | Should -BeGreaterThan 0
            $r.IOPS | Should -BeGreaterThan (0.99 * 300 / $r.Duration.TotalSeconds)
            $r.IOPS | Should -BeLessThan (1.01 * 300 / $r.Duration.TotalSeconds)
            $r.MBps | Should -BeGreaterThan (0.99 * $r.IOPS * $r.BlockSizeBytes / 1e6)
            $r.MBps | Should -BeLessThan (1.01 * $r.IOPS * $r.BlockSizeBytes / 1e6)
            $r.LatencyMicroseconds | Should -BeGreaterThan 0
            $r.CpuMicrosecondsPerIo | Should -BeGreaterThan 0
            $r.Scratch | Should -BeTrue
            [System.IO.Path]::GetDirectoryName($r.Path) | Should -Be $folder
        }
        $results.Where({ $_.Pattern -like 'Random*' }).BlockSizeBytes | Should -Be (@(4096) * 4)
        $results.Where({ $_.Pattern -like 'Sequential*' }).BlockSizeBytes | Should -Be (@(1MB) * 4)
        Get-Entries $folder | Should -BeNullOrEmpty
    }

    It 'runs for -DurationSeconds when no -Count is given, and shows a table' {
        $folder = New-TestFolder
        $r = Measure-VDiskPerformance -LiteralPath $folder -SizeBytes 4MB -CacheMode Writeback -Pattern RandomRead -DurationSeconds 0.3
        $r.Duration.TotalSeconds | Should -BeGreaterOrEqual 0.3
        $r.Operations | Should -BeGreaterThan 0
        $table = ($r | Format-Table | Out-String -Width 200)
        $table | Should -Match 'Mode\s+Pattern\s+IOPS\s+MBps\s+Latency\(us\)\s+P99\(us\)\s+CPU\(us\)/IO\s+QD\s+Duration\s+Path'
        $table | Should -Match 'Writeback\s+RandomRead'
        Get-Entries $folder | Should -BeNullOrEmpty
    }

    It 'makes nothing with -WhatIf' {
        $folder = New-TestFolder
        Measure-VDiskPerformance $folder -SizeBytes 4MB -WhatIf | Should -BeNullOrEmpty
        Get-Entries $folder | Should -BeNullOrEmpty
    }

    It 'removes the scratch image when stopped (Ctrl+C)' {
        $folder = New-TestFolder
        $ps = New-ModuleRunspace
        $null = $ps.AddCommand($cmdlet).AddParameter('Path', $folder).AddParameter('SizeBytes', 8MB).AddParameter('DurationSeconds', 300).AddParameter('CacheMode', 'None')
        $stopped = Stop-AfterProgress $ps $cmdlet
        $stopped.TotalSeconds | Should -BeLessThan 10
        Get-Entries $folder | Should -BeNullOrEmpty
        $ps.Dispose()
    }

    It 'removes the scratch image on SIGTERM before the process ends' {
        $folder = New-TestFolder
        $command = "`$ProgressPreference = 'SilentlyContinue'; Import-Module '$((Get-Module VDisk).Path)'; " +
            "Measure-VDiskPerformance -LiteralPath '$folder' -SizeBytes 8MB -DurationSeconds 300 -CacheMode Writeback -Pattern RandomRead; 'finished'"
        $start = [System.Diagnostics.ProcessStartInfo]::new([System.Environment]::ProcessPath)
        foreach ($argument in (Join-Path $PSHOME 'pwsh.dll'), '-NoProfile', '-NonInteractive', '-Command', $command) { $start.ArgumentList.Add($argument) }
        $start.RedirectStandardOutput = $true
        $start.RedirectStandardError = $true
        $child = [System.Diagnostics.Process]::Start($start)
        try {
            $output = $child.StandardOutput.ReadToEndAsync()
            $deadline = [datetime]::UtcNow.AddSeconds(60)
            while (-not (Get-Entries $folder) -and -not $child.HasExited -and [datetime]::UtcNow -lt $deadline) { Start-Sleep -Milliseconds 50 }
            Start-Sleep -Seconds 2 # the scratch image is written and the measurement is running
            Get-Entries $folder | Should -Not -BeNullOrEmpty
            $kill = (Get-Command kill -CommandType Application -ErrorAction Stop)[0].Source
            & $kill -s TERM $child.Id
            $child.WaitForExit(30000) | Should -BeTrue
            $child.ExitCode | Should -Be 143
            $output.Result | Should -Not -Match 'finished'
            Get-Entries $folder | Should -BeNullOrEmpty
        } finally {
            if (-not $child.HasExited) { $child.Kill() }
        }
    }

    It 'refuses a scratch size below one sequential request' {
        $folder = New-TestFolder
        { Measure-VDiskPerformance $folder -SizeBytes 4096 -ErrorAction Stop } |
            Should -Throw -ErrorId (Get-ErrorId 'InvalidArgument' $cmdlet)
        Get-Entries $folder | Should -BeNullOrEmpty
    }
}

Describe 'Measure-VDiskPerformance on an existing image' {
    BeforeEach {
        $folder = New-TestFolder
        $image = New-DataImage "$folder/data.raw"
        $hash = (Get-FileHash -LiteralPath $image -Algorithm SHA256).Hash
    }

    It 'measures only the read patterns and leaves the image as it was' {
        $results = @(Measure-VDiskPerformance $image -Format Raw -CacheMode None, Writeback -Count 200 -QueueDepth 2)
        ($results | ForEach-Object { "$($_.Mode)/$($_.Pattern)" }) | Should -Be @('None/RandomRead', 'None/SequentialRead', 'Writeback/RandomRead', 'Writeback/SequentialRead')
        $results.Scratch | Should -Not -Contain $true
        $results.Path | Should -Be (@($image) * 4)
        (Get-FileHash -LiteralPath $image -Algorithm SHA256).Hash | Should -Be $hash
        (Get-Entries $folder).Count | Should -Be 1
    }

    It 'refuses write patterns without -Force: ImageHoldsData, image unchanged' {
        { Measure-VDiskPerformance $image -Pattern RandomRead, RandomWrite -Count 10 -ErrorAction Stop } |
            Should -Throw -ErrorId (Get-ErrorId 'ImageHoldsData' $cmdlet)
        $null = Measure-VDiskPerformance $image -Pattern SequentialWrite -Count 10 -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].TargetObject | Should -Be $image
        $failures[0].Exception.Message | Should -Match 'Force'
        (Get-FileHash -LiteralPath $image -Algorithm SHA256).Hash | Should -Be $hash
    }

    It 'writes into it with -Force, and not with -Force -WhatIf' {
        Measure-VDiskPerformance $image -Force -Pattern RandomWrite -Count 100 -WhatIf | Should -BeNullOrEmpty
        (Get-FileHash -LiteralPath $image -Algorithm SHA256).Hash | Should -Be $hash
        $r = Measure-VDiskPerformance $image -Force -Pattern RandomWrite -Count 100 -CacheMode Writeback -Confirm:$false
        $r.Operations | Should -Be 100
        (Get-FileHash -LiteralPath $image -Algorithm SHA256).Hash | Should -Not -Be $hash
    }

    It 'refuses an image a VM holds: ImageInUse' -Skip:$SkipQemu {
        $holder = Start-QemuHolder $image 'raw'
        try {
            { Measure-VDiskPerformance $image -Pattern RandomRead -Count 10 -ErrorAction Stop } |
                Should -Throw -ErrorId (Get-ErrorId 'ImageInUse' $cmdlet)
        } finally {
            Stop-QemuHolder $holder
        }
        (Get-FileHash -LiteralPath $image -Algorithm SHA256).Hash | Should -Be $hash
    }

    It 'reports a missing path as FileNotFound' {
        { Measure-VDiskPerformance -LiteralPath "$folder/missing.qcow2" -ErrorAction Stop } |
            Should -Throw -ErrorId (Get-ErrorId 'FileNotFound' $cmdlet)
    }
}
