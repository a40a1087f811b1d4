# Shared by the module's Pester tests (dot-sourced in BeforeAll): imports the staged module and wraps
# qemu-img, the reference implementation the interop tests compare against.

$modulePath = if ($env:VDISK_MODULE_PATH) { $env:VDISK_MODULE_PATH } else { Join-Path $PSScriptRoot '../../out/VDisk/VDisk.psd1' }
Import-Module $modulePath -Force -ErrorAction Stop

# Where a test that needs qemu-img stands: in CI a missing qemu-img fails the test; elsewhere it is skipped.
function Assert-QemuImg {
    if (-not (Get-Command qemu-img -CommandType Application -ErrorAction Ignore)) {
        throw 'qemu-img is not installed, and these interop tests need it (CI installs qemu-utils).'
    }
}

# Runs qemu-img with the given arguments; returns its output lines and fails on an exit code not allowed.
function Invoke-QemuImg([string[]] $Arguments, [int[]] $AllowedExitCodes = @(0)) {
    Assert-QemuImg
    $output = & qemu-img @Arguments 2>&1
    if ($AllowedExitCodes -notcontains $LASTEXITCODE) {
        throw "qemu-img $($Arguments -join ' ') exited with $LASTEXITCODE`n$($output -join "`n")"
    }
    $output
}

function Get-QemuInfo([string] $Path) {
    (Invoke-QemuImg @('info', '--output=json', $Path)) -join "`n" | ConvertFrom-Json
}

# qemu-img check's JSON report; exit codes 2 (corruptions) and 3 (leaks) still give a report to assert on.
function Get-QemuCheck([string] $Path) {
    (Invoke-QemuImg @('check', '--output=json', $Path) -AllowedExitCodes 0, 2, 3) -join "`n" | ConvertFrom-Json
}

# The full error id a cmdlet's error record carries, e.g. "FileNotFound,VDisk.PowerShell.Commands.GetVDiskCommand".
function Get-ErrorId([string] $Id, [string] $Cmdlet) {
    $class = ($Cmdlet -replace '-', '') + 'Command'
    "$Id,VDisk.PowerShell.Commands.$class"
}

# Overwrites bytes of a file at an offset (for hand-made bad images).
function Set-FileBytes([string] $Path, [long] $Offset, [byte[]] $Bytes) {
    $stream = [System.IO.File]::Open($Path, 'Open', 'ReadWrite')
    try {
        $stream.Position = $Offset
        $stream.Write($Bytes, 0, $Bytes.Length)
    } finally {
        $stream.Dispose()
    }
}

# Runs a command in a separate pwsh (the same one running the tests) and returns what it printed; for output
# that only reaches a real host, such as -WhatIf messages.
function Invoke-ChildPwsh([string] $Command) {
    $pwshDll = Join-Path $PSHOME 'pwsh.dll'
    $output = & ([System.Environment]::ProcessPath) $pwshDll -NoProfile -NonInteractive -Command $Command 2>&1
    if ($LASTEXITCODE -ne 0) { throw "child pwsh exited with $LASTEXITCODE`n$($output -join "`n")" }
    $output -join "`n"
}
