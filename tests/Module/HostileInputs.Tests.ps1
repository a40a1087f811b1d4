# The malformed-image corpus (tests/VDisk.Engine.Tests/Corpus) through every cmdlet that opens images, in this one
# pwsh process: Get-VDisk, Get-VDiskChain, Convert-VDisk (and -Snapshot), Compare-VDisk and New-VDisk -BackingPath.
# Each case must give the error record it declares (id, target, a message naming the file and the problem) or succeed
# when the image is valid, with no terminating error, no hang (each call under 2 s), no call allocating 64 MiB or
# more or raising the process's peak working set by as much, no input byte changed and no output left by a failed
# conversion. Calls run in a second runspace of this
# process, so a hang is stopped and reported instead of stopping the test run.

BeforeDiscovery {
    $engineTests = Join-Path $PSScriptRoot '../VDisk.Engine.Tests/bin/Release/net10.0/VDisk.Engine.Tests.dll'
    $null = [System.Reflection.Assembly]::LoadFrom((Resolve-Path -LiteralPath $engineTests).ProviderPath)
    $corpusRoot = Join-Path ([System.IO.Path]::GetTempPath()) "vdisk-corpus-$([guid]::NewGuid().ToString('N'))"
    $env:VDISK_CORPUS_ROOT = $corpusRoot
    $cases = [VDisk.Engine.Tests.Corpus.MalformedCorpus]::WriteAll($corpusRoot, $true) | ForEach-Object { @{ Case = $_ } }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    $session = [initialsessionstate]::CreateDefault2()
    $session.ImportPSModule((Get-Module VDisk).Path)
    $runspace = [runspacefactory]::CreateRunspace($session)
    $runspace.Open()
    $outputRoot = Join-Path $TestDrive 'outputs'
    $process = [System.Diagnostics.Process]::GetCurrentProcess()
    $timeLimit = [TimeSpan]::FromSeconds(2)
    $allocationLimit = 64MB
    $safetyProblem = 'terminating error|did not finish|input file changed'

    # Runs one command in the second runspace; returns what happened, or a hang after 20 s (the call is stopped).
    function Invoke-Isolated([string] $Command, [hashtable] $Parameters) {
        $ps = [powershell]::Create()
        $ps.Runspace = $runspace
        $null = $ps.AddCommand($Command).AddParameters($Parameters)
        $process.Refresh()
        $peak = $process.PeakWorkingSet64
        $allocated = [GC]::GetTotalAllocatedBytes($true)
        $watch = [System.Diagnostics.Stopwatch]::StartNew()
        $async = $ps.BeginInvoke()
        $result = [pscustomobject]@{ Output = @(); Errors = @(); Warnings = @(); Terminating = $null; Hang = $false; Elapsed = $null; Allocated = 0; PeakRise = 0 }
        if (-not $async.AsyncWaitHandle.WaitOne(20000)) {
            $result.Hang = $true
            $null = $ps.BeginStop($null, $null)
            return $result
        }
        try { $result.Output = @($ps.EndInvoke($async)) } catch { $result.Terminating = $_ }
        $result.Elapsed = $watch.Elapsed
        $result.Allocated = [GC]::GetTotalAllocatedBytes($true) - $allocated
        $process.Refresh()
        $result.PeakRise = $process.PeakWorkingSet64 - $peak
        $result.Errors = @($ps.Streams.Error)
        $result.Warnings = @($ps.Streams.Warning)
        $ps.Dispose()
        $result
    }

    # What is wrong with one call's outcome, given the error kind the case expects there (or $null for success).
    function Test-Outcome($Case, [string] $Cmdlet, $Result, $ExpectedKind, [string] $Mentions, [scriptblock] $OnSuccess) {
        $class = ($Cmdlet -replace '-', '') + 'Command'
        if ($Result.Hang) { return "${Cmdlet}: did not finish within 20 s" }
        $problems = @()
        if ($Result.Terminating) { $problems += "${Cmdlet}: terminating error: $($Result.Terminating)" }
        if ($Result.Elapsed -gt $timeLimit) { $problems += "${Cmdlet}: took $($Result.Elapsed.TotalSeconds) s" }
        if ($Result.Allocated -ge $allocationLimit) { $problems += "${Cmdlet}: allocated $([int]($Result.Allocated / 1MB)) MiB" }
        if ($Result.PeakRise -ge $allocationLimit) { $problems += "${Cmdlet}: raised the peak working set by $([int]($Result.PeakRise / 1MB)) MiB" }
        if ($null -eq $ExpectedKind) {
            if ($Result.Errors) { $problems += "${Cmdlet}: unexpected error $($Result.Errors[0].FullyQualifiedErrorId): $($Result.Errors[0])" }
            elseif ($OnSuccess) { $problems += & $OnSuccess $Result }
            return $problems
        }
        $id = [VDisk.Engine.Tests.Corpus.ErrorIds]::Of($ExpectedKind)
        $file = if ($Case.ErrorPath) { $Case.ErrorPath } else { $Case.Path }
        if ($Result.Errors.Count -ne 1) { return $problems + "${Cmdlet}: $($Result.Errors.Count) error records, expected one $id" }
        $record = $Result.Errors[0]
        if ($record.FullyQualifiedErrorId -ne "$id,VDisk.PowerShell.Commands.$class") { $problems += "${Cmdlet}: error $($record.FullyQualifiedErrorId), expected $id" }
        if ($record.TargetObject -ne $file) { $problems += "${Cmdlet}: target '$($record.TargetObject)', expected '$file'" }
        if (-not "$record".Contains($file)) { $problems += "${Cmdlet}: the message does not name '$file': $record" }
        if ($Mentions -and "$record" -notlike "*$Mentions*") { $problems += "${Cmdlet}: the message does not mention '$Mentions': $record" }
        $problems
    }

    function Get-InputHashes([string] $Folder) {
        Get-ChildItem -LiteralPath $Folder -Recurse -File -Force |
            Where-Object { -not $_.LinkTarget -and [VDisk.Engine.Storage.HostFileKind]::Of($_.FullName) -eq 'Regular' } |
            Sort-Object FullName | ForEach-Object { "$($_.FullName):$((Get-FileHash -LiteralPath $_.FullName).Hash)" }
    }
}

AfterAll {
    $runspace.Dispose()
    Remove-Item -LiteralPath $env:VDISK_CORPUS_ROOT -Recurse -Force -ErrorAction Ignore
}

Describe 'The malformed-image corpus through every cmdlet' {
    It '<Case>: every cmdlet gives the declared answer, safely' -ForEach $cases {
        $output = Join-Path $outputRoot $Case.Name
        $null = New-Item -ItemType Directory -Path $output -Force
        $before = Get-InputHashes $Case.Folder
        $problems = @()
        $stage = [VDisk.Engine.Tests.Corpus.CorpusStage]

        $result = Invoke-Isolated 'Get-VDisk' @{ LiteralPath = $Case.Path }
        $problems += Test-Outcome $Case 'Get-VDisk' $result $Case.ExpectedAt($stage::Info) $Case.Mentions {
            param($r)
            if ($r.Output.Count -ne 1) { "Get-VDisk: $($r.Output.Count) objects" }
            if ([bool]$r.Warnings -ne $Case.WarnsAtInfo) { "Get-VDisk: warnings: '$($r.Warnings -join ' | ')', expected $(if ($Case.WarnsAtInfo) { 'one' } else { 'none' })" }
        }
        $result = Invoke-Isolated 'New-VDisk' @{ Path = (Join-Path $output 'overlay.qcow2'); BackingPath = $Case.Path }
        $problems += Test-Outcome $Case 'New-VDisk' $result $Case.ExpectedAt($stage::Open) $Case.Mentions { param($r) if ($r.Output.Count -ne 1) { "New-VDisk: no VDiskInfo" } }
        $result = Invoke-Isolated 'Get-VDiskChain' @{ LiteralPath = $Case.Path }
        $problems += Test-Outcome $Case 'Get-VDiskChain' $result $Case.ExpectedAt($stage::Map) $Case.Mentions { param($r) if ($r.Output.Count -lt 1) { "Get-VDiskChain: no node" } }
        $converted = Join-Path $output 'converted.qcow2'
        $result = Invoke-Isolated 'Convert-VDisk' @{ LiteralPath = $Case.Path; DestinationPath = $converted }
        $problems += Test-Outcome $Case 'Convert-VDisk' $result $Case.ExpectedAt($stage::Read) $Case.Mentions { param($r) if (-not (Test-Path -LiteralPath $converted)) { "Convert-VDisk: no output" } }
        if ($Case.ExpectedAt($stage::Read) -and (Get-ChildItem -LiteralPath $output -Force | Where-Object Name -NE 'overlay.qcow2')) {
            $problems += "Convert-VDisk: a failed conversion left files: $((Get-ChildItem -LiteralPath $output -Force).Name -join ', ')"
        }
        $result = Invoke-Isolated 'Compare-VDisk' @{ LiteralPath = $Case.Path; DifferencePath = $Case.Path; Quiet = $true }
        $problems += Test-Outcome $Case 'Compare-VDisk' $result $Case.ExpectedAt($stage::Read) $Case.Mentions { param($r) if ($r.Output -ne @($true)) { "Compare-VDisk: '$($r.Output)', expected True" } }
        if ($Case.Snapshot) {
            $result = Invoke-Isolated 'Convert-VDisk' @{ LiteralPath = $Case.Path; DestinationPath = (Join-Path $output 'snapshot.qcow2'); Snapshot = $Case.Snapshot }
            $problems += Test-Outcome $Case 'Convert-VDisk' $result $Case.SnapshotError $null $null
        }

        if (((Get-InputHashes $Case.Folder) -join "`n") -ne ($before -join "`n")) { $problems += 'an input file changed' }
        if ($Case.KnownCoreFailure) {
            # A known qcow2 core failure (MalformedCorpus.KnownQcow2CoreFailures): still there, and still no exception,
            # hang or changed input.
            $problems | Where-Object { $_ -match $safetyProblem } | Should -BeNullOrEmpty
            $problems | Should -Not -BeNullOrEmpty -Because "the case is listed as a known failure: $($Case.KnownCoreFailure)"
        } else {
            $problems | Should -BeNullOrEmpty
        }
    }
}
