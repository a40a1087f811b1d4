# Export-VDisk / Stop-VDiskExport (issue 12): VDiskExport objects, qemu-img and qemu-io through the Uri, read-only by
# default (writes refused) and -Writable, Unix sockets, error ids (port in use, image a VM holds). Every export a
# test starts is stopped in AfterEach/AfterAll whatever happens.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
}

Describe 'Export-VDisk' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $image = "$folder/e.qcow2"
        $null = New-VDisk -Path $image -SizeBytes 16MB
        Invoke-QemuIo $image @('write -P 0x44 1M 2M')
    }

    AfterEach {
        Stop-VDiskExport -All
    }

    It 'writes a VDiskExport that qemu-img reads through its Uri, and Stop-VDiskExport stops it' {
        $e = Export-VDisk $image -Port 0 -Name disk
        $e | Should -BeOfType VDisk.PowerShell.VDiskExport
        $e.Path | Should -Be $image
        $e.Port | Should -BeGreaterThan 0
        $e.Uri | Should -Be "nbd://127.0.0.1:$($e.Port)/disk"
        $e.Writable | Should -BeFalse
        $e.Running | Should -BeTrue
        $e.StartTime | Should -BeLessOrEqual (Get-Date)
        $info = (Invoke-QemuImg @('info', '--output=json', $e.Uri)) -join "`n" | ConvertFrom-Json
        $info.'virtual-size' | Should -Be 16MB
        $raw = "$folder/e.raw"
        Invoke-QemuImg @('convert', '-O', 'raw', $e.Uri, $raw)
        Invoke-QemuImg @('compare', '-f', 'raw', '-F', 'qcow2', $raw, $image) | Out-Null
        $e | Stop-VDiskExport
        $e.Running | Should -BeFalse
        $e.ClientCount | Should -Be 0
        $null = Invoke-QemuImg @('info', $e.Uri) -AllowedExitCodes 1
    }

    It 'refuses writes unless -Writable' {
        $before = (Get-FileHash $image).Hash
        $e = Export-VDisk $image -Port 0
        $output = & qemu-io -f raw -c 'write -P 0x55 0 64k' $e.Uri 2>&1
        ($LASTEXITCODE -ne 0 -or ($output -join ' ') -match 'read-only|not permitted') | Should -BeTrue
        $e | Stop-VDiskExport
        (Get-FileHash $image).Hash | Should -Be $before
    }

    It 'takes writes with -Writable; the image reads back and checks clean' {
        $copy = "$folder/w.qcow2"
        Copy-Item $image $copy
        $e = Export-VDisk $copy -Port 0 -Writable
        $e.Writable | Should -BeTrue
        $output = & qemu-io -f raw -c 'write -P 0x66 4M 1M' -c 'write -z 1M 64k' $e.Uri 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($output -join "`n")
        $e | Stop-VDiskExport
        (Get-QemuCheck $copy).leaks | Should -BeNullOrEmpty
        & qemu-io -r -f qcow2 -c 'read -P 0x66 4M 1M' -c 'read -P 0 1M 64k' -c 'read -P 0x44 2M 64k' $copy | Out-Null
        $LASTEXITCODE | Should -Be 0
    }

    It 'serves a Unix socket and removes it when stopped' {
        $socket = "$folder/s.sock"
        $e = Export-VDisk $image -UnixSocket $socket
        $e.Port | Should -BeNullOrEmpty
        $e.Uri | Should -Be "nbd+unix:///?socket=$socket"
        ((Invoke-QemuImg @('info', '--output=json', $e.Uri)) -join "`n" | ConvertFrom-Json).'virtual-size' | Should -Be 16MB
        $e | Stop-VDiskExport
        $socket | Should -Not -Exist
    }

    It 'reports a port in use as PortInUse' {
        $e = Export-VDisk $image -Port 0
        Export-VDisk $image -Port $e.Port -ErrorVariable failure -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'PortInUse' 'Export-VDisk')
        $failure[0].TargetObject | Should -Be $image
    }

    It 'refuses a writable export of an image a VM holds, as ImageInUse' {
        $holder = Start-QemuHolder $image 'qcow2'
        try {
            Export-VDisk $image -Port 0 -Writable -ErrorVariable failure -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageInUse' 'Export-VDisk')
        } finally {
            Stop-QemuHolder $holder
        }
    }

    It 'reports a missing image as FileNotFound and starts nothing with -WhatIf' {
        Export-VDisk "$folder/none.qcow2" -Port 0 -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Export-VDisk')
        Export-VDisk $image -Port 0 -WhatIf | Should -BeNullOrEmpty
    }

    It 'stops an export twice without an error, and -All stops every export' {
        $a = Export-VDisk $image -Port 0 -Name a
        $b = Export-VDisk $image -Port 0 -Name b
        ($a | Stop-VDiskExport -PassThru).Running | Should -BeFalse
        $a | Stop-VDiskExport -ErrorAction Stop
        Stop-VDiskExport -All
        $b.Running | Should -BeFalse
    }

    It 'shows a table with the Uri' {
        $e = Export-VDisk $image -Port 0 -Name t
        ($e | Format-Table | Out-String -Width 250) | Should -Match ([regex]::Escape($e.Uri))
    }
}
