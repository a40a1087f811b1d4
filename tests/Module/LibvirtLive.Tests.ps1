# Set-VDiskCache and Get-VDiskAttachment against a real libvirtd and a running QEMU (issue 10): the tests start their
# own virtlogd and libvirtd (LibvirtSupport.ps1), define a tiny TCG domain with a virtio-blk and a virtio-scsi disk,
# and for each cache mode set it, restart, and read the flags QEMU really uses from query-block. The QEMU driver's
# refusals are checked against the daemon too; Set-VDiskAttachment moves a disk to virtio-scsi and back. Domain and
# daemons are stopped by pid whatever happens.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'LibvirtSupport.ps1')
    $problem = Get-LibvirtProblem
    $SkipLibvirt = $problem -and $env:CI -ne 'true'
    if ($SkipLibvirt) { Write-Warning "SKIPPING the live libvirt tests: $problem (in CI they fail instead)." }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    . (Join-Path $PSScriptRoot 'LibvirtSupport.ps1')
    if ($problem = Get-LibvirtProblem) {
        if ($env:CI -ne 'true') { return } # every test is skipped (see BeforeDiscovery)
        throw "The live libvirt tests cannot run: $problem (.ci/run installs and sets up libvirt)."
    }
    $script:domain = "vdisk-test-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    $script:daemon = Start-TestLibvirt
    $script:uri = $daemon.Uri
    $xml = New-TestDomainXml $domain $daemon.Folder
    Set-Content -LiteralPath "$($daemon.Folder)/domain.xml" -Value $xml
    & virsh -q -c $uri define "$($daemon.Folder)/domain.xml" | Out-Null
    if ($LASTEXITCODE -ne 0) { throw 'virsh define failed' }
    & virsh -q -c $uri start $domain | Out-Null
    if ($LASTEXITCODE -ne 0) { throw 'virsh start failed' }
    $script:blk = '/machine/peripheral/virtio-disk0/virtio-backend'
    $script:scsi = 'scsi0-0-0-0'
}

AfterAll {
    Stop-TestLibvirt $script:daemon @($script:domain)
    if ($script:daemon) { Remove-Item -LiteralPath $script:daemon.Folder -Recurse -Force -ErrorAction Ignore }
}

Describe 'Get-VDiskAttachment through virsh' -Skip:$SkipLibvirt {
    It 'lists the disks of domains matching a wildcard' {
        $disks = @(Get-VDiskAttachment -Domain 'vdisk-test-*' -Uri $uri | Where-Object Domain -EQ $domain)
        $disks.Target | Should -Be @('vda', 'sda')
        $disks.Bus | Should -Be @('VirtioBlk', 'VirtioScsi')
        $disks[0].CacheMode | Should -Be 'None'
        $disks[0].IoMode | Should -Be 'Native'
        $disks[1].CacheMode | Should -BeNullOrEmpty
        $disks[0].Path | Should -Be "$($daemon.Folder)/$domain-blk.qcow2"
        $disks[0].Uri | Should -Be $uri
    }

    It 'reports a domain that does not exist as DomainNotFound' {
        Get-VDiskAttachment -Domain 'no-such-domain' -Uri $uri -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId DomainNotFound Get-VDiskAttachment)
    }
}

Describe 'Set-VDiskCache on a running domain' -Skip:$SkipLibvirt {
    It 'sets <Mode> on both disks, and after -Restart QEMU uses that mode' -ForEach @(
        @{ Mode = 'Writethrough'; Io = 'Threads'; Direct = $false; NoFlush = $false; WriteBack = $false }
        @{ Mode = 'Writeback'; Io = 'Threads'; Direct = $false; NoFlush = $false; WriteBack = $true }
        @{ Mode = 'DirectSync'; Io = 'Native'; Direct = $true; NoFlush = $false; WriteBack = $false }
        @{ Mode = 'Unsafe'; Io = 'IoUring'; Direct = $false; NoFlush = $true; WriteBack = $true }
        @{ Mode = 'None'; Io = 'Native'; Direct = $true; NoFlush = $false; WriteBack = $true }
    ) {
        $result = Get-VDiskAttachment -Domain $domain -Uri $uri | Set-VDiskCache -CacheMode $Mode -IoMode $Io -Restart -Force -TimeoutSec 0 -PassThru
        $result.CacheMode | Should -Be @($Mode, $Mode)
        (Get-VDiskAttachment -Domain $domain -Uri $uri).IoMode | Should -Be @($Io, $Io)
        $flags = Get-QemuCacheFlags $daemon $domain
        foreach ($disk in $blk, $scsi) {
            $flags[$disk].direct | Should -Be $Direct -Because "$disk cache.direct"
            $flags[$disk].'no-flush' | Should -Be $NoFlush -Because "$disk cache.no-flush"
        }
        # virtio-blk's write cache follows the guest driver's negotiation (none runs here); scsi-hd shows the mode's.
        $flags[$scsi].writeback | Should -Be $WriteBack
    }

    It 'warns that a running domain applies a change at its next start, and defines it' {
        Set-VDiskCache -Domain $domain -Uri $uri -Target sda -CacheMode Writethrough -IoMode Threads -WarningVariable warnings -WarningAction SilentlyContinue
        $warnings[0] | Should -Match 'running.*next start'
        (Get-VDiskAttachment -Domain $domain -Uri $uri -Target sda).CacheMode | Should -Be 'Writethrough'
        (Get-QemuCacheFlags $daemon $domain)[$scsi].writeback | Should -Be $true -Because 'the running QEMU keeps the mode it started with'
    }

    It '-WhatIf shows the XML diff and defines nothing' {
        $before = & virsh -q -c $uri dumpxml --inactive $domain
        # -WhatIf writes to the host, which only a transcript records.
        $transcript = Join-Path $daemon.Folder 'whatif.txt'
        Start-Transcript -LiteralPath $transcript | Out-Null
        Set-VDiskCache -Domain $domain -Uri $uri -Target vda -CacheMode DirectSync -WhatIf
        Stop-Transcript | Out-Null
        $out = Get-Content -LiteralPath $transcript -Raw
        $out | Should -Match "- +<driver name='qemu' type='qcow2' cache='none' io='native'/>"
        $out | Should -Match "\+ +<driver name='qemu' type='qcow2' cache='directsync' io='native'/>"
        & virsh -q -c $uri dumpxml --inactive $domain | Should -Be $before
    }
}

Describe 'Refusals, against the real daemon' -Skip:$SkipLibvirt {
    It 'refuses <Rule> before defining, and libvirtd refuses the same XML' -ForEach @(
        @{ Rule = 'NativeIoNeedsDirectCache'; From = "cache='none' io='native'"; To = "cache='writeback' io='native'" }
        @{ Rule = 'IoThreadNeedsVirtioBlk'; From = "<driver name='qemu' type='qcow2'/>"; To = "<driver name='qemu' type='qcow2' iothread='1'/>" }
        @{ Rule = 'IoThreadNotDefined'; From = "cache='none' io='native'"; To = "cache='none' iothread='2'" }
        @{ Rule = 'QueuesNeedVirtioBlk'; From = "<driver name='qemu' type='qcow2'/>"; To = "<driver name='qemu' type='qcow2' queues='2'/>" }
        @{ Rule = 'DuplicateTarget'; From = "dev='sda'"; To = "dev='vda'" }
        @{ Rule = 'IdeOnQ35'; From = "machine='pc'"; To = "machine='q35'"; Ide = $true }
    ) {
        $name = "vdisk-refused-$([guid]::NewGuid().ToString('N').Substring(0, 6))"
        $xml = (New-TestDomainXml $name $daemon.Folder).Replace($From, $To)
        if ($Ide) { $xml = $xml.Replace("dev='sda' bus='scsi'", "dev='hda' bus='ide'") }
        $xml | Should -Match ([regex]::Escape($To))
        $file = Join-Path $daemon.Folder "$name.xml"
        Set-Content -LiteralPath $file -Value $xml -NoNewline
        # VDisk names the rule (the edit itself sets what is already there, so only the rule can refuse it) ...
        $target = if ($Rule -in 'IoThreadNotDefined', 'NativeIoNeedsDirectCache', 'DuplicateTarget') { 'vda' } elseif ($Ide) { 'hda' } else { 'sda' }
        $current = (Get-VDiskAttachment -DomainXmlPath $file -Target $target)[0]
        $cache = if ($current.CacheMode) { $current.CacheMode } else { 'Writeback' }
        Set-VDiskCache -DomainXmlPath $file -Target $target -CacheMode $cache -NoBackup -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId DomainRuleViolated Set-VDiskCache)
        $err[0].Exception.Message | Should -Match "\[$Rule\]"
        # ... and the real daemon refuses that XML (the schema and test:///default accept it).
        & virt-xml-validate $file domain *> $null
        $LASTEXITCODE | Should -Be 0
        $output = & virsh -q -c $uri define $file 2>&1
        $LASTEXITCODE | Should -Not -Be 0 -Because "libvirtd must refuse $Rule"
        ($output -join ' ') | Should -Match 'unsupported configuration|duplicated'
    }

    It 'refuses an edit that breaks a rule and leaves the domain as it was' {
        Set-VDiskCache -Domain $domain -Uri $uri -Target vda -CacheMode None -IoMode Native -WarningAction SilentlyContinue
        $before = & virsh -q -c $uri dumpxml --inactive $domain
        Set-VDiskCache -Domain $domain -Uri $uri -Target vda -CacheMode Writeback -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId DomainRuleViolated Set-VDiskCache)
        $err[0].Exception.Message | Should -Match 'NativeIoNeedsDirectCache.*-IoMode Threads'
        & virsh -q -c $uri dumpxml --inactive $domain | Should -Be $before
    }

    It 'reports an unknown target as DiskTargetNotFound' {
        Set-VDiskCache -Domain $domain -Uri $uri -Target vdq -CacheMode None -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId DiskTargetNotFound Set-VDiskCache)
    }
}

Describe 'Set-VDiskAttachment on a running domain' -Skip:$SkipLibvirt {
    It 'moves vda to virtio-scsi with queues and an iothread on the controller, and after -Restart QEMU has a SCSI disk' {
        $result = Set-VDiskAttachment -Domain $domain -Uri $uri -Target vda -Bus VirtioScsi -Queues 2 -IoThread 1 -Restart -Force -TimeoutSec 0 -PassThru
        $result.Target | Should -Be 'sdb'
        $result.Bus | Should -Be 'VirtioScsi'
        $live = & virsh -q -c $uri dumpxml $domain | Out-String
        $live | Should -Match "<target dev='sdb' bus='scsi'/>"
        $live | Should -Match "<address type='drive' controller='0' bus='0' target='0' unit='1'/>"
        $live | Should -Match "model='virtio-scsi'>\s*<driver queues='2' iothread='1'/>"
        ($live | Select-String -AllMatches "<controller type='scsi'").Matches.Count | Should -Be 1
        $flags = Get-QemuCacheFlags $daemon $domain
        $flags.Keys | Should -Contain 'scsi0-0-0-1'
        $flags.Keys | Should -Not -Contain $blk
        $flags['scsi0-0-0-1'].direct | Should -Be $true -Because 'the disk keeps its cache mode (none)'
    }

    It 'moves it back to virtio-blk as vda, where QEMU has it as a virtio-blk device again' {
        Set-VDiskAttachment -Domain $domain -Uri $uri -Target sdb -Bus VirtioBlk -Restart -Force -TimeoutSec 0
        # libvirt keeps disks grouped by bus when it defines them, so the order may change.
        $disks = Get-VDiskAttachment -Domain $domain -Uri $uri | Sort-Object Target
        $disks.Target | Should -Be @('sda', 'vda')
        $disks.Bus | Should -Be @('VirtioScsi', 'VirtioBlk')
        $flags = Get-QemuCacheFlags $daemon $domain
        $flags.Keys | Should -Contain $blk
        $flags.Keys | Should -Not -Contain 'scsi0-0-0-1'
    }

    It 'refuses ide on a q35 machine before defining' {
        $name = "vdisk-q35-$([guid]::NewGuid().ToString('N').Substring(0, 6))"
        $file = Join-Path $daemon.Folder "$name.xml"
        Set-Content -LiteralPath $file -Value (New-TestDomainXml $name $daemon.Folder).Replace("machine='pc'", "machine='q35'") -NoNewline
        Set-VDiskAttachment -DomainXmlPath $file -Target vda -Bus Ide -NoBackup -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].Exception.Message | Should -Match '\[IdeOnQ35\]'
        # The real daemon refuses the XML the move would have written.
        & virsh -q -c $uri define $file | Out-Null
        $LASTEXITCODE | Should -Be 0
        $moved = (& virsh -q -c $uri dumpxml --inactive $name | Out-String).Replace("<target dev='vda' bus='virtio'/>", "<target dev='hda' bus='ide'/>") -replace "<address type='pci'[^>]*/>\s*(?=</disk>)", ''
        Set-Content -LiteralPath $file -Value $moved -NoNewline
        $output = & virsh -q -c $uri define $file 2>&1
        & virsh -q -c $uri undefine $name | Out-Null
        $LASTEXITCODE | Should -Be 0
        ($output -join ' ') | Should -Match 'IDE controllers are unsupported'
    }
}
