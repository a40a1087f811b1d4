<#
.SYNOPSIS
    Runs the module's Pester tests (tests/Module/*.Tests.ps1) against the staged module and writes the counts as
    JSON for build.ps1. Meant to run in a fresh pwsh: a binary module cannot be unloaded from a process.
#>
param(
    # Pester.psd1 of Pester 5.7.1 (restored from NuGet by tests/PesterRestore).
    [Parameter(Mandatory)] [string] $PesterPath,
    # The staged module manifest (out/VDisk/VDisk.psd1); the tests import it from $env:VDISK_MODULE_PATH.
    [Parameter(Mandatory)] [string] $ModulePath,
    # Where to write { Passed, Failed, Skipped }.
    [Parameter(Mandatory)] [string] $ResultPath
)

$ErrorActionPreference = 'Stop'
Import-Module $PesterPath -Force
$env:VDISK_MODULE_PATH = (Resolve-Path -LiteralPath $ModulePath).ProviderPath

$config = New-PesterConfiguration
$config.Run.Path = $PSScriptRoot
$config.Run.PassThru = $true
$config.Output.Verbosity = 'Detailed'
$result = Invoke-Pester -Configuration $config

# A failing BeforeAll or a file that does not load fails its block or container, not a test: count those too.
$failed = $result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount
@{ Passed = $result.PassedCount; Failed = $failed; Skipped = $result.SkippedCount } | ConvertTo-Json | Set-Content -LiteralPath $ResultPath
exit ([int]($failed -gt 0))
