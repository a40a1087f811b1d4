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

# Writes into an image with qemu-io (writeback cache, for speed); each of $Commands is one qemu-io command.
function Invoke-QemuIo([string] $Path, [string[]] $Commands) {
    Assert-QemuImg
    $arguments = @('-t', 'writeback') + @($Commands | ForEach-Object { '-c', $_ }) + @($Path)
    $output = & qemu-io @arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "qemu-io $($arguments -join ' ') exited with $LASTEXITCODE`n$($output -join "`n")" }
}

function Get-QemuInfo([string] $Path) {
    (Invoke-QemuImg @('info', '--output=json', $Path)) -join "`n" | ConvertFrom-Json
}

# qemu-img check's JSON report; exit codes 2 (corruptions) and 3 (leaks) still give a report to assert on.
function Get-QemuCheck([string] $Path) {
    (Invoke-QemuImg @('check', '--output=json', $Path) -AllowedExitCodes 0, 2, 3) -join "`n" | ConvertFrom-Json
}

# qemu-io holding an image open (with QEMU's locks), as a running VM does; its first report means it holds it.
function Start-QemuHolder([string] $Path, [string] $Format) {
    Assert-QemuImg
    $start = [System.Diagnostics.ProcessStartInfo]::new('stdbuf')
    foreach ($argument in '-oL', 'qemu-io', '-f', $Format, '-c', 'read 0 512', '-c', 'sleep 20000', $Path) { $start.ArgumentList.Add($argument) }
    $start.RedirectStandardOutput = $true
    $holder = [System.Diagnostics.Process]::Start($start)
    $line = $holder.StandardOutput.ReadLine()
    if ($line -notmatch '^read') { $holder.Kill(); throw "qemu-io did not open $Path`: $line" }
    $holder
}

function Stop-QemuHolder($Holder) {
    $Holder.Kill()
    $Holder.WaitForExit()
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

# A fresh folder under TestDrive, so tests do not see each other's files.
function New-TestFolder {
    $folder = Join-Path $TestDrive ([guid]::NewGuid().ToString('N'))
    (New-Item -ItemType Directory -Path $folder).FullName
}

# Fills $Length bytes of a file at $Offset with $Value: known guest content for raw images.
function Set-FilePattern([string] $Path, [long] $Offset, [int] $Length, [byte] $Value) {
    $bytes = [byte[]]::new($Length)
    [Array]::Fill($bytes, $Value)
    Set-FileBytes $Path $Offset $bytes
}

# A sparse raw image of $SizeBytes holding $Value in 1 MiB at each of $DataOffsets; returns its full path.
function New-PatternImage([string] $Path, [long] $SizeBytes, [long[]] $DataOffsets = @(), [byte] $Value = 0x5a) {
    $info = New-VDisk -Path $Path -SizeBytes $SizeBytes -Format Raw
    foreach ($offset in $DataOffsets) { Set-FilePattern $info.Path $offset 1MB $Value }
    $info.Path
}

# Starts $Command (a PowerShell object with the module imported) and stops it, as Ctrl+C does, once it has
# written a progress record of $Activity; returns how long the stop took. Fails if the command ends first.
function Stop-AfterProgress([powershell] $Command, [string] $Activity) {
    $running = $Command.BeginInvoke()
    $deadline = [datetime]::UtcNow.AddSeconds(30)
    while (-not ($Command.Streams.Progress | Where-Object Activity -EQ $Activity) -and -not $running.IsCompleted -and [datetime]::UtcNow -lt $deadline) {
        Start-Sleep -Milliseconds 20
    }
    if ($running.IsCompleted) { throw "$Activity finished before it could be stopped." }
    $watch = [System.Diagnostics.Stopwatch]::StartNew()
    $Command.Stop()
    $watch.Elapsed
}

# Runs a command in a separate pwsh (the same one running the tests) and returns what it printed; for output
# that only reaches a real host, such as -WhatIf messages.
function Invoke-ChildPwsh([string] $Command) {
    $pwshDll = Join-Path $PSHOME 'pwsh.dll'
    $output = & ([System.Environment]::ProcessPath) $pwshDll -NoProfile -NonInteractive -Command $Command 2>&1
    if ($LASTEXITCODE -ne 0) { throw "child pwsh exited with $LASTEXITCODE`n$($output -join "`n")" }
    $output -join "`n"
}

# A runspace without a host (no one can answer a question there) with the module loaded: for tests of what asks first.
function New-ModuleRunspace {
    $ps = [powershell]::Create()
    $null = $ps.AddCommand('Import-Module').AddParameter('Name', (Get-Module VDisk).Path).AddStatement()
    $ps
}
