# The staged module as a whole: manifest, folder contents, output types, format views, error id table.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    $module = Get-Module VDisk
    $moduleFolder = $module.ModuleBase
}

Describe 'Module manifest and staged folder' {
    It 'exports exactly its cmdlets and no functions or aliases' {
        ($module.ExportedCmdlets.Keys | Sort-Object) | Should -Be @('Backup-VDisk', 'Checkpoint-VDisk', 'Compare-VDisk', 'Convert-VDisk',
            'ConvertTo-VDiskLibvirtXml', 'ConvertTo-VDiskQemuArgument', 'Dismount-VDisk', 'Export-VDisk', 'Get-VDisk', 'Get-VDiskAttachment', 'Get-VDiskBackup', 'Get-VDiskChain',
            'Get-VDiskMap', 'Get-VDiskPartition', 'Get-VDiskSnapshot', 'Measure-VDisk',
            'Measure-VDiskPerformance', 'Merge-VDiskChain', 'Mount-VDisk', 'New-VDisk', 'New-VDiskAttachment', 'Optimize-VDisk',
            'Remove-VDiskBackup', 'Remove-VDiskSnapshot', 'Resize-VDisk', 'Restore-VDiskBackup', 'Restore-VDiskSnapshot', 'Set-VDisk', 'Set-VDiskAttachment',
            'Set-VDiskCache', 'Stop-VDiskExport', 'Test-VDisk', 'Test-VDiskBackup')
        $module.ExportedFunctions.Count | Should -Be 0
        $module.ExportedAliases.Count | Should -Be 0
    }

    It 'uses approved verbs for every cmdlet' {
        $approved = (Get-Verb).Verb
        foreach ($name in $module.ExportedCmdlets.Keys) { ($name -split '-')[0] | Should -BeIn $approved }
    }

    It 'declares PowerShell 7.4, the Core edition and the binary root module' {
        $manifest = Test-ModuleManifest -Path (Join-Path $moduleFolder 'VDisk.psd1')
        $manifest.PowerShellVersion | Should -Be ([version]'7.4')
        $manifest.CompatiblePSEditions | Should -Be @('Core')
        $manifest.RootModule | Should -Be 'VDisk.PowerShell.dll'
        $manifest.Guid | Should -Not -Be ([guid]::Empty)
        $manifest.Description | Should -Not -BeNullOrEmpty
    }

    It 'stages <_> in out/VDisk' -ForEach @(
        'VDisk.psd1', 'VDisk.PowerShell.dll', 'VDisk.Engine.dll', 'ZstdSharp.dll', 'System.IO.Hashing.dll', 'VDisk.format.ps1xml',
        'VDisk.PowerShell.dll-Help.xml', 'en-US/about_VDisk.help.txt') {
        Join-Path $moduleFolder $_ | Should -Exist
    }

    It 'does not stage System.Management.Automation (pwsh supplies it)' {
        Join-Path $moduleFolder 'System.Management.Automation.dll' | Should -Not -Exist
    }

    It 'loads the engine from the module folder' {
        [VDisk.Engine.Core.VDiskException].Assembly.Location | Should -Be (Join-Path $moduleFolder 'VDisk.Engine.dll')
    }
}

Describe 'Format views' {
    BeforeAll {
        $image = New-VDisk -Path (Join-Path $TestDrive 'view.qcow2') -SizeBytes 20GB
    }

    It 'loads a table view for <_>' -ForEach 'VDisk.PowerShell.VDiskInfo', 'VDisk.PowerShell.VDiskChainNode', 'VDisk.PowerShell.VDiskComparison', 'VDisk.PowerShell.VDiskMapRange', 'VDisk.PowerShell.VDiskMeasurement', 'VDisk.PowerShell.VDiskAttachment', 'VDisk.PowerShell.VDiskExport', 'VDisk.PowerShell.VDiskMount' {
        $view = Get-FormatData -TypeName $_
        $view.FormatViewDefinition.Control | Should -BeOfType System.Management.Automation.TableControl
    }

    It 'shows sizes in binary units while the object keeps bytes' {
        $image.VirtualSize | Should -Be 21474836480
        $text = $image | Format-Table | Out-String -Width 250
        $text | Should -Match '20 GiB'
        $text | Should -Match '64 KiB'
        $text | Should -Not -Match '21474836480'
    }

    It 'shows chain nodes with binary units' {
        $text = Get-VDiskChain -LiteralPath $image.Path | Format-Table | Out-String -Width 250
        $text | Should -Match 'Depth'
        $text | Should -Match '20 GiB'
    }
}

Describe 'HumanSize' {
    It 'formats <Bytes> as "<Text>"' -ForEach @(
        @{ Bytes = 0; Text = '0 B' }
        @{ Bytes = 1023; Text = '1023 B' }
        @{ Bytes = 1536; Text = '1.5 KiB' }
        @{ Bytes = 196608; Text = '192 KiB' }
        @{ Bytes = 21474836480; Text = '20 GiB' }
        @{ Bytes = 1099511627776 * 3; Text = '3 TiB' }
    ) {
        [VDisk.PowerShell.HumanSize]::Format($Bytes) | Should -Be $Text
    }

    It 'gives an empty string for a missing size (raw images have no cluster size)' {
        [VDisk.PowerShell.HumanSize]::Format($null) | Should -Be ''
    }
}

Describe 'Error id table' {
    # The one mapping from engine error kinds to error ids and categories (VDiskErrors.Classify). Kinds that a
    # test cannot provoke end to end (IOError: the host failing a read or write) are checked here.
    BeforeAll {
        $errors = [VDisk.PowerShell.Commands.VDiskCmdletBase].Assembly.GetType('VDisk.PowerShell.Commands.VDiskErrors', $true)
        $classify = $errors.GetMethod('Classify', [System.Reflection.BindingFlags]'Static, NonPublic, Public')
    }

    It 'maps <Kind> to <Id> / <Category>' -ForEach @(
        @{ Kind = 'NotFound'; Id = 'FileNotFound'; Category = 'ObjectNotFound' }
        @{ Kind = 'NotAnImage'; Id = 'NotAnImage'; Category = 'InvalidData' }
        @{ Kind = 'Corrupt'; Id = 'CorruptImage'; Category = 'InvalidData' }
        @{ Kind = 'Unsupported'; Id = 'UnsupportedFeature'; Category = 'NotImplemented' }
        @{ Kind = 'AlreadyExists'; Id = 'FileExists'; Category = 'ResourceExists' }
        @{ Kind = 'BackingMissing'; Id = 'BackingFileMissing'; Category = 'ObjectNotFound' }
        @{ Kind = 'ChainLoop'; Id = 'BackingChainLoop'; Category = 'InvalidData' }
        @{ Kind = 'ChainTooDeep'; Id = 'BackingChainTooDeep'; Category = 'LimitsExceeded' }
        @{ Kind = 'ReadOnly'; Id = 'ImageReadOnly'; Category = 'PermissionDenied' }
        @{ Kind = 'InvalidArgument'; Id = 'InvalidArgument'; Category = 'InvalidArgument' }
        @{ Kind = 'IoError'; Id = 'IOError'; Category = 'WriteError' }
        @{ Kind = 'NotInChain'; Id = 'BaseNotInChain'; Category = 'InvalidArgument' }
        @{ Kind = 'NoBacking'; Id = 'NoBackingFile'; Category = 'InvalidOperation' }
        @{ Kind = 'DomainNotFound'; Id = 'DomainNotFound'; Category = 'ObjectNotFound' }
        @{ Kind = 'DiskNotFound'; Id = 'DiskTargetNotFound'; Category = 'ObjectNotFound' }
        @{ Kind = 'DomainRuleViolated'; Id = 'DomainRuleViolated'; Category = 'InvalidOperation' }
        @{ Kind = 'InvalidDomainXml'; Id = 'InvalidDomainXml'; Category = 'InvalidData' }
        @{ Kind = 'LibvirtFailed'; Id = 'LibvirtFailed'; Category = 'ResourceUnavailable' }
        @{ Kind = 'HoldsData'; Id = 'ImageHoldsData'; Category = 'PermissionDenied' }
    ) {
        $result = $classify.Invoke($null, @([VDisk.Engine.Core.VDiskErrorKind]$Kind))
        $result.Item1 | Should -Be $Id
        $result.Item2 | Should -Be ([System.Management.Automation.ErrorCategory]$Category)
    }

    It 'has an entry for every engine error kind' {
        foreach ($kind in [enum]::GetValues([VDisk.Engine.Core.VDiskErrorKind])) {
            { $classify.Invoke($null, @($kind)) } | Should -Not -Throw -Because "$kind needs an error id"
        }
    }
}
