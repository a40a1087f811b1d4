<#
.SYNOPSIS
    Shows VDisk's main job in a temporary folder: a template image, an overlay on it, Get-VDisk and Get-VDiskChain.
    Run by `build.ps1 -Task Demo` in a fresh pwsh after the build.
#>
param(
    # The staged module manifest (out/VDisk/VDisk.psd1).
    [Parameter(Mandatory)] [string] $ModulePath
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath

$folder = Join-Path ([IO.Path]::GetTempPath()) "vdisk-demo-$([guid]::NewGuid().ToString('N'))"
$null = New-Item -ItemType Directory -Path $folder
Push-Location -LiteralPath $folder
try {
    Write-Host "> New-VDisk -Path ./templates/debian12.qcow2 -SizeBytes 20GB   # in $folder"
    $null = New-Item -ItemType Directory -Path templates
    New-VDisk -Path ./templates/debian12.qcow2 -SizeBytes 20GB | Format-Table | Out-Host

    Write-Host '> New-VDisk -Path ./web01.qcow2 -BackingPath ./templates/debian12.qcow2'
    New-VDisk -Path ./web01.qcow2 -BackingPath ./templates/debian12.qcow2 | Format-Table | Out-Host

    Write-Host '> New-VDisk -Path ./scratch.img -SizeBytes 64MB -Preallocation Full'
    $null = New-VDisk -Path ./scratch.img -SizeBytes 64MB -Preallocation Full

    Write-Host '> Get-ChildItem -Recurse | Get-VDisk | Format-Table'
    Get-ChildItem -Recurse | Get-VDisk | Format-Table | Out-Host

    Write-Host '> Get-VDiskChain -Path ./web01.qcow2'
    Get-VDiskChain -Path ./web01.qcow2 | Format-Table | Out-Host

    Write-Host '> Get-VDisk ./web01.qcow2 | Select-Object Path, VirtualSize, BackingPath, BackingFormat, Compat, ChainDepth'
    Get-VDisk ./web01.qcow2 | Select-Object Path, VirtualSize, BackingPath, BackingFormat, Compat, ChainDepth | Format-List | Out-Host
} finally {
    Pop-Location
    Remove-Item -LiteralPath $folder -Recurse -Force
    Write-Host "Removed $folder"
}
