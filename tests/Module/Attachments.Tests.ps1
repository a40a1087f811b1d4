# The attachment cmdlets on domain XML files and new attachments, no daemon needed (issue 10): Get-VDiskAttachment
# -DomainXmlPath, Set-VDiskCache and Set-VDiskAttachment on files
# (byte-exact edits, backup, -NoBackup, -WhatIf, pipeline, rules),
# New-VDiskAttachment | ConvertTo-VDiskLibvirtXml / ConvertTo-VDiskQemuArgument, and the table view.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    $corpus = Join-Path $PSScriptRoot '../VDisk.Engine.Tests/Libvirt/Corpus'
    function Copy-Corpus([string] $Name) {
        $folder = New-TestFolder
        Copy-Item -LiteralPath (Join-Path $corpus $Name) -Destination $folder
        Join-Path $folder $Name
    }
}

Describe 'Get-VDiskAttachment -DomainXmlPath' {
    It 'reads every disk of a file, with a filter on targets' {
        $file = Copy-Corpus 'q35-sata-cdrom-network.xml'
        $disks = Get-VDiskAttachment -DomainXmlPath $file
        $disks.Target | Should -Be @('sda', 'sdb', 'sdc', 'vda')
        $disks[0].Domain | Should -Be 'db01'
        $disks[0].CacheMode | Should -Be 'Writeback'
        $disks[0].DomainXmlPath | Should -Be $file
        (Get-VDiskAttachment -DomainXmlPath $file -Target vd*).Path | Should -Be '/dev/vg0/db01-data'
    }

    It 'shows a table grouped by domain with QEMU defaults in brackets' {
        $text = Get-VDiskAttachment -DomainXmlPath (Copy-Corpus 'hand-written-comments-quotes.xml') | Format-Table | Out-String -Width 200
        $text | Should -Match 'Domain: web01'
        $text | Should -Match 'vdb\s+VirtioBlk\s+\(writeback\)\s+\(threads\)'
    }

    It 'reports a file that is not domain XML as InvalidDomainXml' {
        $file = Join-Path (New-TestFolder) 'net.xml'
        Set-Content -LiteralPath $file -Value '<network><name>default</name></network>'
        Get-VDiskAttachment -DomainXmlPath $file -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId InvalidDomainXml Get-VDiskAttachment)
        $err[0].TargetObject | Should -Be $file
    }
}

Describe 'Set-VDiskCache -DomainXmlPath' {
    It 'changes only the driver attributes and keeps a backup of the original' {
        $file = Copy-Corpus 'hand-written-comments-quotes.xml'
        $original = [System.IO.File]::ReadAllText($file)
        $result = Set-VDiskCache -DomainXmlPath $file -Target vda -CacheMode None -IoMode Native -PassThru -Confirm:$false
        $result.CacheMode | Should -Be 'None'
        [System.IO.File]::ReadAllText($file) | Should -Be $original.Replace('cache="unsafe" iothread="1" queues="4"/>', 'cache="none" iothread="1" queues="4" io="native"/>')
        $backup = Get-ChildItem -LiteralPath (Split-Path $file) -Filter '*.bak'
        @($backup).Count | Should -Be 1
        [System.IO.File]::ReadAllText($backup.FullName) | Should -Be $original
    }

    It 'takes piped attachments, editing each file once, and -NoBackup keeps no copy' {
        $file = Copy-Corpus 'i440fx-virtio-blk-and-scsi.xml'
        Get-VDiskAttachment -DomainXmlPath $file | Set-VDiskCache -CacheMode DirectSync -NoBackup
        (Get-VDiskAttachment -DomainXmlPath $file).CacheMode | Should -Be @('DirectSync', 'DirectSync')
        Get-ChildItem -LiteralPath (Split-Path $file) -Filter '*.bak' | Should -BeNullOrEmpty
    }

    It '-WhatIf changes nothing' {
        $file = Copy-Corpus 'crlf-virtio-scsi-iothreadids.xml'
        $before = Get-FileHash -LiteralPath $file
        Set-VDiskCache -DomainXmlPath $file -Target sda -CacheMode Unsafe -WhatIf
        (Get-FileHash -LiteralPath $file).Hash | Should -Be $before.Hash
        Get-ChildItem -LiteralPath (Split-Path $file) -Filter '*.bak' | Should -BeNullOrEmpty
    }

    It 'refuses a change libvirt would refuse, naming the rule, and leaves the file alone' {
        $file = Copy-Corpus 'q35-sata-cdrom-network.xml'
        $before = Get-FileHash -LiteralPath $file
        Set-VDiskCache -DomainXmlPath $file -Target sdc -CacheMode Writeback -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId DomainRuleViolated Set-VDiskCache)
        $err[0].Exception.Message | Should -Match '\[NativeIoNeedsDirectCache\] disk sdc'
        (Get-FileHash -LiteralPath $file).Hash | Should -Be $before.Hash
    }

    It 'reports an unknown target and still changes the others' {
        $file = Copy-Corpus 'i440fx-virtio-blk-and-scsi.xml'
        Set-VDiskCache -DomainXmlPath $file -Target vdz, sda -CacheMode Writethrough -NoBackup -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId DiskTargetNotFound Set-VDiskCache)
        (Get-VDiskAttachment -DomainXmlPath $file -Target sda).CacheMode | Should -Be 'Writethrough'
    }

    It 'needs something to set' {
        { Set-VDiskCache -DomainXmlPath (Copy-Corpus 'i440fx-virtio-blk-and-scsi.xml') -Target vda -ErrorAction Stop } |
            Should -Throw -ErrorId (Get-ErrorId InvalidArgument Set-VDiskCache)
    }
}

Describe 'Set-VDiskAttachment -DomainXmlPath' {
    It 'moves a virtio-blk disk onto the existing virtio-scsi controller, with a backup and -PassThru' {
        $file = Copy-Corpus 'i440fx-virtio-blk-and-scsi.xml'
        $original = [System.IO.File]::ReadAllText($file)
        $result = Set-VDiskAttachment -DomainXmlPath $file -Target vda -Bus VirtioScsi -Queues 2 -IoThread 1 -PassThru -Confirm:$false
        $result.Target | Should -Be 'sdb'
        $result.Bus | Should -Be 'VirtioScsi'
        $result.CacheMode | Should -Be 'None'
        $expected = $original.Replace("<target dev='vda' bus='virtio'/>", "<target dev='sdb' bus='scsi'/>").
            Replace("<address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>", "<address type='drive' controller='0' bus='0' target='0' unit='1'/>").
            Replace("<controller type='scsi' index='0' model='virtio-scsi'>", "<controller type='scsi' index='0' model='virtio-scsi'>`n      <driver queues='2' iothread='1'/>")
        [System.IO.File]::ReadAllText($file) | Should -Be $expected
        $backup = Get-ChildItem -LiteralPath (Split-Path $file) -Filter '*.bak'
        [System.IO.File]::ReadAllText($backup.FullName) | Should -Be $original
    }

    It 'takes a piped attachment and moves a sata boot disk to virtio-blk, keeping its boot order' {
        $file = Copy-Corpus 'q35-sata-cdrom-network.xml'
        Get-VDiskAttachment -DomainXmlPath $file -Target sda | Set-VDiskAttachment -Bus VirtioBlk -NoBackup
        $disk = Get-VDiskAttachment -DomainXmlPath $file -Target vdb
        $disk.Bus | Should -Be 'VirtioBlk'
        $disk.BootOrder | Should -Be 1
        [System.IO.File]::ReadAllText($file) | Should -Not -Match "unit='0'/>\s*</disk>\s*<disk type='file' device='cdrom'"
    }

    It '-WhatIf shows the diff and changes nothing' {
        $file = Copy-Corpus 'q35-sata-cdrom-network.xml'
        $before = Get-FileHash -LiteralPath $file
        # -WhatIf writes to the host, which only a transcript records.
        $transcript = Join-Path (New-TestFolder) 'whatif.txt'
        Start-Transcript -LiteralPath $transcript | Out-Null
        Set-VDiskAttachment -DomainXmlPath $file -Target vda -Bus Sata -WhatIf
        Stop-Transcript | Out-Null
        $output = Get-Content -LiteralPath $transcript -Raw
        $output | Should -Match ([regex]::Escape("+       <target dev='sdd' bus='sata'/>"))
        $output | Should -Match ([regex]::Escape("-       <target dev='vda' bus='virtio'/>"))
        (Get-FileHash -LiteralPath $file).Hash | Should -Be $before.Hash
    }

    It 'refuses <Bus> with <Extra> on q35 naming <Rule>, leaving the file alone' -ForEach @(
        @{ Bus = 'Ide'; Extra = @{}; Rule = 'IdeOnQ35' }
        @{ Bus = 'Sata'; Extra = @{ Queues = 4 }; Rule = 'QueuesNeedVirtioBlk' }
        @{ Bus = 'VirtioScsi'; Extra = @{ IoThread = 1 }; Rule = 'IoThreadNotDefined' }
    ) {
        $file = Copy-Corpus 'q35-sata-cdrom-network.xml'
        $before = Get-FileHash -LiteralPath $file
        Set-VDiskAttachment -DomainXmlPath $file -Target vda -Bus $Bus @Extra -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId DomainRuleViolated Set-VDiskAttachment)
        $err[0].Exception.Message | Should -Match "\[$Rule\]"
        (Get-FileHash -LiteralPath $file).Hash | Should -Be $before.Hash
    }

    It 'reports an unknown target' {
        Set-VDiskAttachment -DomainXmlPath (Copy-Corpus 'i440fx-virtio-blk-and-scsi.xml') -Target vdz -Bus Sata -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId DiskTargetNotFound Set-VDiskAttachment)
    }
}

Describe 'New-VDiskAttachment and the converters' {
    BeforeAll {
        $folder = New-TestFolder
        $image = (New-VDisk -Path (Join-Path $folder 'vm.qcow2') -SizeBytes 16MB).Path
    }

    It 'probes the format and writes libvirt XML for a virtio-blk disk' {
        $attachment = New-VDiskAttachment -Path $image -CacheMode None -IoMode Native -Discard unmap
        $attachment.Format | Should -Be 'qcow2'
        $attachment.Target | Should -Be 'vda'
        $xml = $attachment | ConvertTo-VDiskLibvirtXml
        $xml | Should -Match "<driver name='qemu' type='qcow2' cache='none' io='native' discard='unmap'/>"
        $xml | Should -Match "<target dev='vda' bus='virtio'/>"
    }

    It 'adds the virtio-scsi controller a virtio-scsi disk needs' {
        $xml = New-VDiskAttachment -Path $image -Bus VirtioScsi -CacheMode Writeback | ConvertTo-VDiskLibvirtXml
        $xml | Should -Match "^<controller type='scsi' index='0' model='virtio-scsi'/>"
        $xml | Should -Match "<target dev='sda' bus='scsi'/>"
    }

    It 'writes -blockdev/-device arguments, and -drive with -Style Drive' {
        $arguments = New-VDiskAttachment -Path $image -Bus VirtioScsi -CacheMode Writethrough | ConvertTo-VDiskQemuArgument
        $arguments[0..1] | Should -Be @('-device', 'virtio-scsi-pci,id=scsi0')
        ($arguments -join ' ') | Should -Match "-blockdev driver=qcow2,file=vdisk0-file,node-name=vdisk0,cache.direct=off,cache.no-flush=off"
        ($arguments -join ' ') | Should -Match '-device scsi-hd,bus=scsi0.0,drive=vdisk0,id=vdisk0-device,write-cache=off'
        $drive = New-VDiskAttachment -Path $image -CacheMode Unsafe | ConvertTo-VDiskQemuArgument -Style Drive
        $drive[0] | Should -Be '-drive'
        $drive[1] | Should -Match 'format=qcow2,if=none,id=vdisk0,cache.direct=off,cache.no-flush=on'
    }

    It 'refuses io native without a direct cache mode, naming the rule' {
        New-VDiskAttachment -Path $image -CacheMode Writeback -IoMode Native -ErrorVariable err -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId DomainRuleViolated New-VDiskAttachment)
        New-VDiskAttachment -Path $image -Bus VirtioScsi -Queues 4 -ErrorVariable err2 -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $err2[0].Exception.Message | Should -Match 'QueuesNeedVirtioBlk'
    }

    It 'reports a missing image as FileNotFound' {
        New-VDiskAttachment -Path (Join-Path $folder 'missing.qcow2') -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId FileNotFound New-VDiskAttachment)
    }
}
