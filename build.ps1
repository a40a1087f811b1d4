<#
.SYNOPSIS
    Builds, tests, demonstrates, benchmarks or fuzzes VDisk.
.DESCRIPTION
    Build: restores the tools, compiles the solution (Release) and stages a loadable module in out/VDisk.
    Test:  Build, then the engine's xunit tests, the module's Pester tests (in a fresh pwsh) and a one-minute afl++
           smoke run of each fuzz target (each counts as one test: no crash, no hang, enough inputs run); the last line
           is "N passed, N failed" and the exit code is non-zero on any failure or when no test ran. Without afl-fuzz
           the smoke runs are skipped with a warning, except in CI (CI=true), where that is a failure.
    Demo:  Build, then runs docs/examples/Show-Demo.ps1 in a fresh pwsh: a template and an overlay, conversions to raw,
           back and compressed, comparisons and the backing chain.
    Bench: runs tests/VDisk.Bench beside qemu-img (needs qemu-utils, e2fsprogs and GNU time) and prints ratios;
           -BenchArguments picks what runs: 'io', 'convert', 'snapshot', 'chain', 'resize-map', 'check', 'backup', 'perf', 'nbd', 'encrypt' or 'all' (default),
           then the number of runs (default 3), then for 'check' the GiB scattered in its 1 TiB image (default 20), for 'encrypt' the LUKS iter-time in ms (default 100).
    Fuzz:  runs the fuzz targets under afl++ for -FuzzSeconds each (default 1800), two at a time; -FuzzTarget picks
           targets (qcow2, vmdk-sparse, vmdk-descriptor, vdi, partitions), -FuzzSeeds adds folders of extra seed files. Findings
           go to out/fuzz/<target>/findings; see docs/fuzzing.md for replaying them and turning them into regressions.
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 -Task Test
.EXAMPLE
    dotnet pwsh ./build.ps1 -Task Test -FullSweep
    The whole suite with the long power-loss sweep (qemu-img check on every crash image, 12 write subsets per crash point).
.EXAMPLE
    dotnet pwsh ./build.ps1 -Task Bench -BenchArguments convert, 1
.EXAMPLE
    dotnet pwsh ./build.ps1 -Task Fuzz -FuzzSeconds 600 -FuzzTarget qcow2, vdi
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Test', 'Demo', 'Bench', 'Fuzz')]
    [string] $Task = 'Build',

    [string[]] $BenchArguments = @(),

    # With -Task Test: the long sweeps (every crash image of the power-loss tests, more subsets per crash point).
    [switch] $FullSweep,

    [ValidateRange(10, 86400)]
    [int] $FuzzSeconds = 1800,

    [string[]] $FuzzTarget = @(),

    [string[]] $FuzzSeeds = @()
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$env:NO_COLOR = '1'
$env:POWERSHELL_TELEMETRY_OPTOUT = '1'
$env:POWERSHELL_UPDATECHECK = 'Off'
$env:DOTNET_CLI_TELEMETRY_OPTOUT = '1'
$env:DOTNET_NOLOGO = '1'

$root = $PSScriptRoot
$moduleDir = Join-Path $root 'out/VDisk'
$resultsDir = Join-Path $root 'out/TestResults'
$fuzzDir = Join-Path $root 'out/fuzz'
$fuzzSmokeSeconds = 60

# Runs a native command and stops the build when it fails.
function Invoke-Native([string] $Description, [scriptblock] $Command) {
    & $Command | Out-Host
    if ($LASTEXITCODE -ne 0) { throw "$Description failed with exit code $LASTEXITCODE." }
}

function Invoke-Build {
    Invoke-Native 'dotnet tool restore' { dotnet tool restore }
    Invoke-Native 'dotnet build' { dotnet build (Join-Path $root 'VDiskPS.sln') -c Release }

    # The module is published ReadyToRun for this machine's runtime identifier: precompiled code spares each new pwsh
    # the JIT work of the engine's first call (about 50 ms); on another platform the same files run as plain IL.
    $published = Join-Path $root 'out/publish/VDisk.PowerShell'
    Invoke-Native 'dotnet publish (ReadyToRun)' {
        dotnet publish (Join-Path $root 'src/VDisk.PowerShell/VDisk.PowerShell.csproj') -c Release --no-self-contained `
            -r ([System.Runtime.InteropServices.RuntimeInformation]::RuntimeIdentifier) -p:PublishReadyToRun=true -o $published
    }
    Remove-Item -LiteralPath $moduleDir -Recurse -Force -ErrorAction Ignore
    $null = New-Item -ItemType Directory -Path $moduleDir
    Copy-Item -Path (Join-Path $published '*.dll') -Destination $moduleDir
    Copy-Item -LiteralPath (Join-Path $root 'VDisk.psd1'), (Join-Path $root 'src/VDisk.PowerShell/VDisk.format.ps1xml') -Destination $moduleDir
    & (Join-Path $root 'src/VDisk.PowerShell/Help/Build-MamlHelp.ps1') -DocsPath (Join-Path $root 'docs/en-US') `
        -MamlPath (Join-Path $moduleDir 'VDisk.PowerShell.dll-Help.xml') -AboutFolder (Join-Path $moduleDir 'en-US')
    Write-Host "Module staged in $moduleDir"
}

# The engine's xunit tests; counts come from the trx report.
function Invoke-EngineTests {
    $trx = Join-Path $resultsDir 'engine.trx'
    Remove-Item -LiteralPath $trx -ErrorAction Ignore
    dotnet test (Join-Path $root 'tests/VDisk.Engine.Tests/VDisk.Engine.Tests.csproj') -c Release --no-build `
        --logger 'trx;LogFileName=engine.trx' --logger 'console;verbosity=normal' --results-directory $resultsDir | Out-Host
    $exitCode = $LASTEXITCODE
    if (-not (Test-Path -LiteralPath $trx)) {
        Write-Host "Engine tests: no trx report (dotnet test exit code $exitCode)."
        return @{ Passed = 0; Failed = [int]($exitCode -ne 0); Skipped = 0 }
    }
    $counters = ([xml](Get-Content -LiteralPath $trx -Raw)).TestRun.ResultSummary.Counters
    $counts = @{ Passed = [int]$counters.passed; Failed = [int]$counters.failed + [int]$counters.error + [int]$counters.timeout; Skipped = [int]$counters.total - [int]$counters.executed }
    if ($exitCode -ne 0 -and $counts.Failed -eq 0) { $counts.Failed = 1 } # the run itself failed
    Write-Host "Engine tests: $($counts.Passed) passed, $($counts.Failed) failed, $($counts.Skipped) skipped."
    $counts
}

# The module's Pester tests, in a fresh pwsh so the just-built assemblies are the ones loaded.
function Invoke-ModuleTests {
    Invoke-Native 'restoring Pester' { dotnet restore (Join-Path $root 'tests/PesterRestore/PesterRestore.csproj') }
    $packages = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path ([Environment]::GetFolderPath('UserProfile')) '.nuget/packages' }
    $pester = Join-Path $packages 'pester/5.7.1/tools/Pester.psd1'
    if (-not (Test-Path -LiteralPath $pester)) { throw "Pester 5.7.1 not found at $pester after restore." }
    $resultFile = Join-Path $resultsDir 'pester.json'
    Remove-Item -LiteralPath $resultFile -ErrorAction Ignore
    dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $root 'tests/Module/Invoke-ModuleTests.ps1') `
        -PesterPath $pester -ModulePath (Join-Path $moduleDir 'VDisk.psd1') -ResultPath $resultFile | Out-Host
    $exitCode = $LASTEXITCODE
    if (-not (Test-Path -LiteralPath $resultFile)) {
        Write-Host "Module tests: no result (pwsh exit code $exitCode)."
        return @{ Passed = 0; Failed = 1; Skipped = 0 }
    }
    $result = Get-Content -LiteralPath $resultFile -Raw | ConvertFrom-Json
    Write-Host "Module tests: $($result.Passed) passed, $($result.Failed) failed, $($result.Skipped) skipped."
    @{ Passed = [int]$result.Passed; Failed = [int]$result.Failed; Skipped = [int]$result.Skipped }
}

# afl++ runs of the fuzz targets (tests/VDisk.Fuzz/Invoke-Fuzz.ps1); one result per target.
function Invoke-Fuzz([int] $Seconds, [string[]] $Targets, [string[]] $Seeds) {
    & (Join-Path $root 'tests/VDisk.Fuzz/Invoke-Fuzz.ps1') -Seconds $Seconds -OutPath $fuzzDir -Target $Targets -ExtraSeeds $Seeds `
        -Required:($env:CI -eq 'true')
}

# The one-minute smoke run of every target, each counted as one test.
function Invoke-FuzzSmoke {
    $clock = [Diagnostics.Stopwatch]::StartNew()
    try {
        $results = @(Invoke-Fuzz $fuzzSmokeSeconds @() @())
    } catch {
        Write-Host "Fuzz smoke runs could not start: $_"
        return @{ Passed = 0; Failed = 1; Skipped = 0 }
    }
    $counts = @{
        Passed  = @($results | Where-Object Status -eq 'Passed').Count
        Failed  = @($results | Where-Object Status -eq 'Failed').Count
        Skipped = @($results | Where-Object Status -eq 'Skipped').Count
    }
    Write-Host "Fuzz smoke runs: $($counts.Passed) passed, $($counts.Failed) failed, $($counts.Skipped) skipped ($([int]$clock.Elapsed.TotalSeconds) s)."
    $counts
}

Push-Location -LiteralPath $root
try {
    switch ($Task) {
        'Build' { Invoke-Build }
        'Test' {
            if ($FullSweep) { $env:VDISK_POWERLOSS_FULL = '1' }
            Invoke-Build
            $null = New-Item -ItemType Directory -Force -Path $resultsDir
            $engine = Invoke-EngineTests
            $module = Invoke-ModuleTests
            $fuzz = Invoke-FuzzSmoke
            $passed = $engine.Passed + $module.Passed + $fuzz.Passed
            $failed = $engine.Failed + $module.Failed + $fuzz.Failed
            Write-Host "Skipped: $($engine.Skipped + $module.Skipped + $fuzz.Skipped)"
            Write-Host "$passed passed, $failed failed"
            if ($failed -gt 0 -or $passed -eq 0) { exit 1 }
        }
        'Demo' {
            Invoke-Build
            Invoke-Native 'the demo' { dotnet pwsh -NoProfile -NonInteractive -File (Join-Path $root 'docs/examples/Show-Demo.ps1') -ModulePath (Join-Path $moduleDir 'VDisk.psd1') }
        }
        'Bench' {
            $arguments = @($BenchArguments | ForEach-Object { $_ -split ',' } | Where-Object { $_ })  # 'convert,1' from a shell is one string
            # Published ReadyToRun like the module, so each timed conversion process starts the way the module does.
            $bench = Join-Path $root 'out/publish/VDisk.Bench'
            Invoke-Native 'dotnet publish (benchmarks)' {
                dotnet publish (Join-Path $root 'tests/VDisk.Bench/VDisk.Bench.csproj') -c Release --no-self-contained `
                    -r ([System.Runtime.InteropServices.RuntimeInformation]::RuntimeIdentifier) -p:PublishReadyToRun=true -o $bench
            }
            Invoke-Native 'the benchmark' { dotnet (Join-Path $bench 'VDisk.Bench.dll') @arguments }
        }
        'Fuzz' {
            Invoke-Native 'dotnet tool restore' { dotnet tool restore }
            $targets = @($FuzzTarget | ForEach-Object { $_ -split ',' } | Where-Object { $_ })  # 'qcow2,vdi' from a shell is one string
            $results = @(Invoke-Fuzz $FuzzSeconds $targets $FuzzSeeds)
            if (@($results | Where-Object Status -ne 'Passed').Count -gt 0) { exit 1 }
        }
    }
} finally {
    Pop-Location
}
