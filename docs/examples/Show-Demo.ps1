<#
.SYNOPSIS
    Shows VDisk's main job in a temporary folder: a template image and an overlay on it (nothing written into
    either), the overlay converted to raw and back and compressed, the copies compared, and the backing chain.
    Run by `build.ps1 -Task Demo` in a fresh pwsh after the build.
#>
param(
    # The staged module manifest (out/VDisk/VDisk.psd1).
    [Parameter(Mandatory)] [string] $ModulePath
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue' # progress bars do not belong in a captured log
Import-Module $ModulePath

# Prints a command as typed, then runs it and shows its output as a table.
function Show-Step([string] $Command) {
    Write-Host "> $Command"
    $output = & ([scriptblock]::Create($Command))
    if ($null -ne $output) { $output | Format-Table | Out-Host }
}

$folder = Join-Path ([IO.Path]::GetTempPath()) "vdisk-demo-$([guid]::NewGuid().ToString('N'))"
$null = New-Item -ItemType Directory -Path $folder, (Join-Path $folder 'templates'), (Join-Path $folder 'export')
Push-Location -LiteralPath $folder
try {
    Write-Host "# In $folder"
    Show-Step 'New-VDisk -Path ./templates/debian12.qcow2 -SizeBytes 20GB'
    Show-Step 'New-VDisk -Path ./web01.qcow2 -BackingPath ./templates/debian12.qcow2'
    Show-Step 'Get-VDiskChain -Path ./web01.qcow2'

    Write-Host '# Flatten the overlay to raw, bring it back to qcow2, and make a compressed copy.'
    Show-Step 'Convert-VDisk ./web01.qcow2 ./export/web01.raw -PassThru'
    Show-Step 'Convert-VDisk ./export/web01.raw -DestinationFormat Qcow2 -PassThru'
    Show-Step 'Convert-VDisk ./web01.qcow2 ./export/web01-small.qcow2 -Compress -CompressionType Zstd -PassThru'
    Show-Step 'Convert-VDisk ./web01.qcow2 ./export/web01.vmdk -Subformat StreamOptimized -WhatIf'

    Write-Host '# Every copy reads the same as the overlay, whatever its format.'
    Show-Step 'Get-ChildItem ./export | Compare-VDisk -DifferencePath ./web01.qcow2'
    Show-Step 'Compare-VDisk ./export/web01.raw ./templates/debian12.qcow2 -Quiet'
    Show-Step 'Compare-VDisk ./export/web01.raw ./web01.qcow2 -Strict | Select-Object Equal, AllocationDifferenceOffset, Reason'

    Write-Host '# Errors have stable ids: converting a file onto itself is refused.'
    Show-Step 'Convert-VDisk ./web01.qcow2 -ErrorVariable failed -ErrorAction SilentlyContinue; $failed.FullyQualifiedErrorId'

    Show-Step 'Get-ChildItem -Recurse -File | Get-VDisk'
} finally {
    Pop-Location
    Remove-Item -LiteralPath $folder -Recurse -Force
    Write-Host "Removed $folder"
}
