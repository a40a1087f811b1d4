<#
.SYNOPSIS
    Runs the engine's fuzz targets under afl++ (docs/fuzzing.md) and returns one result per target.
.DESCRIPTION
    Publishes tests/VDisk.Fuzz into OutPath/bin, instruments that copy of VDisk.Engine.dll with the sharpfuzz tool
    (the build output stays uninstrumented), writes each target's seeds (generated images, the regression
    reproducers, and every -ExtraSeeds folder), then runs afl-fuzz for -Seconds per target, two targets at a time,
    each with its dictionary from Dictionaries/.
    A target passes when afl-fuzz saved no crash and no hang, ran at least 100 inputs a second on average and found
    at least 100 edges (so a harness that cannot run, or refuses every input at once, fails). Findings stay in
    OutPath/<target>/findings/default/{crashes,hangs}; replay them with
    dotnet OutPath/bin/VDisk.Fuzz.dll run <target> <file-or-folder>.
    Without afl-fuzz every target is skipped with a warning, or fails when -Required (CI).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [int] $Seconds,
    [Parameter(Mandatory)] [string] $OutPath,
    [string[]] $Target = @(),
    [string[]] $ExtraSeeds = @(),
    [switch] $Required
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$root = (Resolve-Path (Join-Path $PSScriptRoot '../..')).Path
$project = Join-Path $PSScriptRoot 'VDisk.Fuzz.csproj'
$bin = Join-Path $OutPath 'bin'
$fuzzDll = Join-Path $bin 'VDisk.Fuzz.dll'
$execsPerSecondFloor = 100
$edgeFloor = 100
$parallel = 2
$timeoutMs = 2000

# What afl++ 4.04c (Debian 12) needs to drive a SharpFuzz target here.
$aflEnvironment = [ordered]@{
    AFL_SKIP_BIN_CHECK                    = '1' # the target is dotnet, not an afl-instrumented binary
    AFL_NO_UI                             = '1' # plain log lines instead of the curses screen
    AFL_SKIP_CPUFREQ                      = '1' # no cpufreq governor to check in a container
    AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES = '1' # core_pattern may pipe to a crash handler on other hosts
    AFL_NO_AFFINITY                       = '1' # do not pin to a core: other fuzzers and builds share the machine
}

function New-Result([string] $Name, [string] $Status, [string] $Reason) {
    [pscustomobject]@{ Target = $Name; Status = $Status; Reason = $Reason; Execs = 0L; ExecsPerSecond = 0.0; Paths = 0; Edges = 0; Crashes = 0; Hangs = 0; Findings = $null }
}

function Invoke-Checked([string] $Description, [scriptblock] $Command) {
    & $Command | Out-Host
    if ($LASTEXITCODE -ne 0) { throw "$Description failed with exit code $LASTEXITCODE." }
}

function Read-Stats([string] $File) {
    $stats = @{}
    foreach ($line in Get-Content -LiteralPath $File) {
        $name, $value = $line -split '\s*:\s*', 2
        $stats[$name.Trim()] = $value.Trim()
    }
    $stats
}

# Judges one finished afl-fuzz run from its fuzzer_stats file.
function Get-Verdict([string] $Name, [string] $Findings) {
    $statsFile = Join-Path $Findings 'default/fuzzer_stats'
    if (-not (Test-Path -LiteralPath $statsFile)) { return New-Result $Name 'Failed' "afl-fuzz wrote no fuzzer_stats (see $Findings.log)" }
    $s = Read-Stats $statsFile
    $result = New-Result $Name 'Passed' ''
    $result.Execs = [long]$s.execs_done
    $result.ExecsPerSecond = [double]$s.execs_done / [math]::Max(1, [double]$s.run_time)
    $result.Paths = [int]$s.corpus_count
    $result.Edges = [int]$s.edges_found
    $result.Crashes = [int]$s.saved_crashes
    $result.Hangs = [int]$s.saved_hangs
    $result.Findings = $Findings
    $problems = @(
        if ($result.Crashes -gt 0) { "$($result.Crashes) crash(es) in $Findings/default/crashes" }
        if ($result.Hangs -gt 0) { "$($result.Hangs) hang(s) in $Findings/default/hangs" }
        if ($result.ExecsPerSecond -lt $execsPerSecondFloor) { "only $([math]::Round($result.ExecsPerSecond)) execs/s (floor $execsPerSecondFloor)" }
        if ($result.Edges -lt $edgeFloor) { "only $($result.Edges) edges (floor $edgeFloor)" }
    )
    if ($problems) {
        $result.Status = 'Failed'
        $result.Reason = $problems -join '; '
    }
    $result
}

Remove-Item -LiteralPath $OutPath -Recurse -Force -ErrorAction Ignore
$null = New-Item -ItemType Directory -Path $OutPath
Invoke-Checked 'publishing the fuzz project' { dotnet publish $project -c Release -o $bin --nologo -v quiet }
$known = @(dotnet $fuzzDll list)
$unknown = @($Target | Where-Object { $_ -notin $known })
if ($unknown) { throw "Unknown fuzz target(s) $($unknown -join ', '); the targets are $($known -join ', ')." }
$targets = @(if ($Target) { $Target } else { $known })

$afl = Get-Command afl-fuzz -CommandType Application -ErrorAction Ignore | Select-Object -First 1
if (-not $afl) {
    $status = if ($Required) { 'Failed' } else { 'Skipped' }
    $what = if ($Required) { 'every fuzz target fails (it is required here)' } else { 'every fuzz target is skipped' }
    Write-Warning "afl-fuzz is not installed (apt-get install afl++): $what."
    return $targets | ForEach-Object { New-Result $_ $status 'afl-fuzz is not installed' }
}
Push-Location -LiteralPath $root
try { Invoke-Checked 'sharpfuzz instrumentation' { dotnet sharpfuzz (Join-Path $bin 'VDisk.Engine.dll') } } finally { Pop-Location }

$seedFolders = @(Join-Path $root 'tests/VDisk.Engine.Tests/FuzzRegressions') + @($ExtraSeeds)
$extra = @($seedFolders | ForEach-Object { '--extra'; (Resolve-Path -LiteralPath $_).Path })
foreach ($name in $targets) {
    Invoke-Checked "seeds for $name" { dotnet $fuzzDll seeds $name (Join-Path $OutPath "$name/seeds") @extra }
}

$dotnet = (Get-Command dotnet -CommandType Application | Select-Object -First 1).Source
$saved = @{}
foreach ($key in $aflEnvironment.Keys) { $saved[$key] = [Environment]::GetEnvironmentVariable($key); [Environment]::SetEnvironmentVariable($key, $aflEnvironment[$key]) }
$results = [System.Collections.Generic.List[object]]::new()
try {
    for ($i = 0; $i -lt $targets.Count; $i += $parallel) {
        $batch = @($targets[$i..([math]::Min($i + $parallel, $targets.Count) - 1)] | ForEach-Object {
            $findings = Join-Path $OutPath "$_/findings"
            $dictionary = Join-Path $PSScriptRoot "Dictionaries/$_.dict"
            $arguments = @('-i', (Join-Path $OutPath "$_/seeds"), '-o', $findings, '-V', $Seconds, '-t', $timeoutMs, '-m', 'none'
                if (Test-Path -LiteralPath $dictionary) { '-x', $dictionary }
                '--', $dotnet, $fuzzDll, 'fuzz', $_) |
                ForEach-Object { if ("$_" -match '\s') { '"' + $_ + '"' } else { "$_" } } # Start-Process joins them with spaces
            Write-Host "afl-fuzz $_ for $Seconds s ($findings)"
            [pscustomobject]@{
                Name     = $_
                Findings = $findings
                Process  = Start-Process -FilePath $afl.Source -ArgumentList $arguments -PassThru -NoNewWindow `
                    -RedirectStandardOutput "$findings.log" -RedirectStandardError "$findings.err.log"
            }
        })
        foreach ($run in $batch) {
            # -V stops afl-fuzz by itself; the margin covers start-up and calibration.
            if (-not $run.Process.WaitForExit(($Seconds + 180) * 1000)) {
                Stop-Process -Id $run.Process.Id -Force
                $results.Add((New-Result $run.Name 'Failed' "afl-fuzz did not stop after $Seconds s"))
                continue
            }
            $results.Add((Get-Verdict $run.Name $run.Findings))
        }
    }
} finally {
    foreach ($key in $saved.Keys) { [Environment]::SetEnvironmentVariable($key, $saved[$key]) }
}

foreach ($r in $results) {
    $line = "fuzz {0}: {1:N0} execs ({2:N0}/s), {3} paths, {4} edges, {5} crashes, {6} hangs: {7}" -f `
        $r.Target, $r.Execs, $r.ExecsPerSecond, $r.Paths, $r.Edges, $r.Crashes, $r.Hangs, $r.Status.ToLowerInvariant()
    if ($r.Reason) { $line += " ($($r.Reason))" }
    Write-Host $line
}
if ($results | Where-Object Crashes -gt 0) { Write-Host "Replay a finding: dotnet $fuzzDll run <target> <file-or-folder>" }
$results
