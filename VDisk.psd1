# Module manifest of VDisk: binary cmdlets over a pure C# virtual disk engine.
# build.ps1 stages it with the assemblies, format and help files into out/VDisk.
@{
    RootModule           = 'VDisk.PowerShell.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '83325f96-2b86-4e95-ba15-7e5d8e07fcc3'
    Author               = 'VDisk contributors'
    CompanyName          = 'VDisk'
    Copyright            = '(c) VDisk contributors'
    Description          = 'Create, inspect, convert, compare, snapshot, resize, check and repair virtual disk images (raw, qcow2, VMDK, VDI) from PowerShell without QEMU: a qemu-img replacement whose cmdlets write objects to the pipeline.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @('VDisk.format.ps1xml')
    CmdletsToExport      = @('New-VDisk', 'Get-VDisk', 'Get-VDiskChain', 'Convert-VDisk', 'Compare-VDisk',
                             'Checkpoint-VDisk', 'Get-VDiskSnapshot', 'Restore-VDiskSnapshot', 'Remove-VDiskSnapshot',
                             'Merge-VDiskChain', 'Set-VDisk', 'Resize-VDisk', 'Get-VDiskMap', 'Get-VDiskPartition', 'Measure-VDisk', 'Test-VDisk',
                             'Optimize-VDisk', 'Get-VDiskAttachment', 'Set-VDiskCache', 'Set-VDiskAttachment', 'New-VDiskAttachment',
                             'ConvertTo-VDiskLibvirtXml', 'ConvertTo-VDiskQemuArgument',
                             'Backup-VDisk', 'Get-VDiskBackup', 'Restore-VDiskBackup', 'Test-VDiskBackup', 'Remove-VDiskBackup',
                             'Measure-VDiskPerformance', 'Export-VDisk', 'Stop-VDiskExport',
                             'Mount-VDisk', 'Dismount-VDisk')
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    PrivateData          = @{
        PSData = @{
            Tags = @('qcow2', 'raw', 'virtual-disk', 'qemu-img', 'kvm', 'libvirt', 'Linux', 'Windows')
        }
    }
}
