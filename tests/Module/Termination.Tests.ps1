# Killed conversions (issue 7, item 3), with real child pwsh processes: SIGTERM stops the work like Ctrl+C, so the
# temporary output is removed before the process ends; SIGKILL cannot be caught and leaves the temporary file, which
# the next run writing into the folder removes, while a live run's temporary file in the same folder is left alone.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    $kill = (Get-Command kill -CommandType Application -ErrorAction Stop)[0].Source

    # A child pwsh converting $Source to $Destination slowly (every zero cluster compressed on one thread), so it is
    # still running when signalled; it prints 'converted' if it finishes.
    function Start-ChildConversion([string] $Source, [string] $Destination) {
        $command = "`$ProgressPreference = 'SilentlyContinue'; Import-Module '$((Get-Module VDisk).Path)'; " +
            "Convert-VDisk -LiteralPath '$Source' -DestinationPath '$Destination' -SparseThresholdBytes 0 -Compress -ThrottleLimit 1 -ErrorAction Stop; 'converted'"
        $start = [System.Diagnostics.ProcessStartInfo]::new([System.Environment]::ProcessPath)
        foreach ($argument in (Join-Path $PSHOME 'pwsh.dll'), '-NoProfile', '-NonInteractive', '-Command', $command) { $start.ArgumentList.Add($argument) }
        $start.RedirectStandardOutput = $true
        $start.RedirectStandardError = $true
        $start.Environment['NO_COLOR'] = '1'
        $process = [System.Diagnostics.Process]::Start($start)
        [pscustomobject]@{ Process = $process; Output = $process.StandardOutput.ReadToEndAsync(); Errors = $process.StandardError.ReadToEndAsync() }
    }

    # The temporary output of a conversion to $Name in $Folder, once it exists and has been written to.
    function Wait-TemporaryOutput([string] $Folder, [string] $Name, $Child) {
        $deadline = [datetime]::UtcNow.AddSeconds(60)
        while ([datetime]::UtcNow -lt $deadline -and -not $Child.Process.HasExited) {
            $temp = Get-ChildItem -LiteralPath $Folder -Force -Filter ".$Name.vdisk-*.tmp" | Where-Object Length -GT 0
            if ($temp) { return $temp.FullName }
            Start-Sleep -Milliseconds 50
        }
        throw "No temporary output for $Name appeared (child exited: $($Child.Process.HasExited); $($Child.Errors.Result))"
    }

    function Stop-Child($Child) {
        if (-not $Child.Process.HasExited) { $Child.Process.Kill() }
        $Child.Process.WaitForExit()
    }
}

Describe 'A conversion killed with a signal' {
    BeforeEach {
        $folder = New-TestFolder
        $source = (New-VDisk "$folder/big.raw" 16GB -Format Raw).Path
        $stamp = (Get-Item -LiteralPath $source).LastWriteTimeUtc
        $children = [System.Collections.Generic.List[object]]::new()
    }
    AfterEach {
        foreach ($child in $children) { Stop-Child $child }
    }

    It 'SIGTERM: stops promptly, removes its temporary output, leaves the source untouched' {
        $child = Start-ChildConversion $source "$folder/big.qcow2"
        $children.Add($child)
        $null = Wait-TemporaryOutput $folder 'big.qcow2' $child

        & $kill -s TERM $child.Process.Id
        $child.Process.WaitForExit(20000) | Should -BeTrue

        $child.Process.ExitCode | Should -Be 143 -Because 'the process ends as SIGTERM asks (128 + 15), after the cleanup'
        $child.Output.Result | Should -Not -Match 'converted'
        @(Get-ChildItem -LiteralPath $folder -Force -Name) | Should -Be @('big.raw')
        (Get-Item -LiteralPath $source).Length | Should -Be 16GB
        (Get-Item -LiteralPath $source).LastWriteTimeUtc | Should -Be $stamp
    }

    It 'SIGKILL: leaves its temporary output, which the next run in the folder removes; a live run''s stays' {
        # A live conversion into the same folder, running through all of this.
        $liveSource = (New-VDisk "$folder/live.raw" 768MB -Format Raw).Path
        $live = Start-ChildConversion $liveSource "$folder/live.qcow2"
        $children.Add($live)
        $liveTemp = Wait-TemporaryOutput $folder 'live.qcow2' $live

        $victim = Start-ChildConversion $source "$folder/killed.qcow2"
        $children.Add($victim)
        $left = Wait-TemporaryOutput $folder 'killed.qcow2' $victim
        $victim.Process.Kill() # SIGKILL
        $victim.Process.WaitForExit()
        $left | Should -Exist -Because 'nothing can clean up after SIGKILL in the killed process itself'

        $live.Process.HasExited | Should -BeFalse -Because 'the live conversion must still be running for this test'
        $null = New-VDisk "$folder/next.qcow2" 1MB -WarningVariable warnings -WarningAction SilentlyContinue # the next run in the folder

        $left | Should -Not -Exist
        @($warnings.Message) | Should -Be @("$folder/next.qcow2: Removed '$left', the temporary output of an earlier run that was killed before it could clean up.")
        $liveTemp | Should -Exist
        $live.Process.WaitForExit(180000) | Should -BeTrue
        $live.Process.ExitCode | Should -Be 0
        $live.Output.Result | Should -Match 'converted'
        (Compare-VDisk $liveSource "$folder/live.qcow2").Equal | Should -BeTrue
        @(Get-ChildItem -LiteralPath $folder -Force -Name) | Sort-Object | Should -Be @('big.raw', 'live.qcow2', 'live.raw', 'next.qcow2')
    }
}
