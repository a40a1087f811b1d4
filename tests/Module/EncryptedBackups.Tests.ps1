# Encrypted backup sets (issue 13): Backup-VDisk -Encrypt makes every point a LUKS-encrypted qcow2 image with the
# set's passphrase and keys the block hashes; every point restores exactly through VDisk and through plain qemu-img
# with the secret, no guest byte is stored in clear, a wrong or missing passphrase is a clear error that writes
# nothing, and a prune of an encrypted set keeps it encrypted and restorable.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    $secret = 'correct horse battery staple'
    $pw = ConvertTo-SecureString $secret -AsPlainText -Force
    $wrong = ConvertTo-SecureString 'not the passphrase' -AsPlainText -Force
    $marker = [Text.Encoding]::ASCII.GetBytes('VDISK-SECRET-MARKER-' * 200) # 4000 bytes, written into the guest

    function Get-Sha([string] $Path) {
        $raw = "$Path.sha.raw"
        Invoke-QemuImg @('convert', '-U', '-O', 'raw', $Path, $raw) | Out-Null
        try { (Get-FileHash -LiteralPath $raw -Algorithm SHA256).Hash } finally { Remove-Item -LiteralPath $raw }
    }

    # The marker bytes at a guest offset of a qcow2 image, through a raw round trip.
    function Write-Marker([string] $Image, [long] $Offset) {
        $raw = "$Image.marker.raw"
        Invoke-QemuImg @('convert', '-O', 'raw', $Image, $raw) | Out-Null
        Set-FileBytes $raw $Offset $marker
        Invoke-QemuImg @('convert', '-O', 'qcow2', $raw, $Image) | Out-Null
        Remove-Item -LiteralPath $raw
    }

    # True when any file under $Folder holds the marker's first 64 bytes.
    function Test-MarkerIn([string] $Folder) {
        $needle = [Text.Encoding]::ASCII.GetString($marker, 0, 64)
        foreach ($file in Get-ChildItem -LiteralPath $Folder -File -Recurse) {
            $text = [Text.Encoding]::Latin1.GetString([IO.File]::ReadAllBytes($file.FullName))
            if ($text.Contains($needle)) { return $true }
        }
        $false
    }
}

Describe 'An encrypted backup set' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $image = "$folder/vm.qcow2"
        $set = "$folder/offsite/vm"
        $null = New-VDisk -Path $image -SizeBytes 16MB
        $shas = @(); $made = @()
        foreach ($round in 0..2) {
            Invoke-QemuIo $image @("write -P 0x$((17 * ($round + 1)).ToString('x2')) $($round * 3)M 1M")
            Write-Marker $image (8MB + $round * 1MB + 4096)
            $shas += Get-Sha $image
            $encrypt = if ($round -eq 0) { @{ Encrypt = $true; IterTimeMilliseconds = 10 } } else { @{} }
            $made += Backup-VDisk $image -Destination $set -Passphrase $pw @encrypt
            Start-Sleep -Milliseconds 1100
        }
    }

    It 'encrypts every point, uncompressed as QEMU requires' {
        $made.Kind | Should -Be @('Full', 'Incremental', 'Incremental')
        $made.Encrypted | Should -Be @($true, $true, $true)
        $made.Compression | Should -Be @('None', 'None', 'None')
        foreach ($point in $made) {
            $info = Get-VDisk $point.Path
            $info.Encrypted | Should -BeTrue
            $info.EncryptionFormat | Should -Be 'Luks'
            $info.Cipher | Should -Be 'aes-256-xts-plain64'
        }
    }

    It 'stores no guest byte in clear: the marker written into the guest is in no file of the set' {
        Test-MarkerIn $folder/offsite | Should -BeFalse
        # the check can fail: the marker is there in the source
        Invoke-QemuImg @('convert', '-O', 'raw', $image, "$folder/plain.raw") | Out-Null
        Test-MarkerIn $folder | Should -BeTrue
        Remove-Item "$folder/plain.raw"
    }

    It 'keeps the passphrase out of the manifest, which records keyed block hashes' {
        $manifest = Get-Content -Raw "$set/vdisk-backup.json" | ConvertFrom-Json
        $manifest.hashAlgorithm | Should -Be 'HMAC-SHA-256'
        $manifest.encryption.cipher | Should -Be 'aes-256-xts-plain64'
        (Get-Content -Raw "$set/vdisk-backup.json") | Should -Not -Match ([regex]::Escape($secret))
    }

    It 'restores every point exactly with the passphrase' {
        foreach ($i in 0..2) {
            $restored = "$folder/restored$i.raw"
            Get-VDiskBackup $set | Select-Object -Index $i | Restore-VDiskBackup -DestinationPath $restored -Passphrase $pw
            (Get-FileHash -LiteralPath $restored -Algorithm SHA256).Hash | Should -Be $shas[$i]
        }
    }

    It 'restores the newest point with plain qemu-img and the secret, without VDisk' {
        $newest = $made[2].Path
        $opts = "driver=qcow2,file.filename=$newest,encrypt.key-secret=s,backing.encrypt.key-secret=s,backing.backing.encrypt.key-secret=s"
        Set-Content -LiteralPath "$folder/secret.txt" -Value $secret -NoNewline # a file, so the secret is on no command line
        Invoke-QemuImg @('convert', '-O', 'raw', '--object', "secret,id=s,file=$folder/secret.txt", '--image-opts', $opts, "$folder/byqemu.raw") | Out-Null
        (Get-FileHash -LiteralPath "$folder/byqemu.raw" -Algorithm SHA256).Hash | Should -Be $shas[2]
    }

    It 'checks every block of every point with the passphrase' {
        $checks = Test-VDiskBackup $set -Passphrase $pw
        $checks.Intact | Should -Be @($true, $true, $true)
        ($checks.BlocksChecked | Measure-Object -Sum).Sum | Should -BeGreaterThan 40
    }

    It 'refuses a restore without the passphrase (PassphraseRequired) or with a wrong one (WrongPassphrase), writing nothing' {
        { Restore-VDiskBackup $set -DestinationPath "$folder/none.raw" -ErrorAction Stop } |
            Should -Throw -ErrorId (Get-ErrorId 'PassphraseRequired' 'Restore-VDiskBackup')
        { Restore-VDiskBackup $set -DestinationPath "$folder/wrong.raw" -Passphrase $wrong -ErrorAction Stop } |
            Should -Throw -ErrorId (Get-ErrorId 'WrongPassphrase' 'Restore-VDiskBackup')
        Test-Path "$folder/none.raw", "$folder/wrong.raw" | Should -Be @($false, $false)
        Get-ChildItem -LiteralPath $folder -Filter '*.vdisk-tmp*' | Should -BeNullOrEmpty
    }

    It 'refuses a backup into the set without its passphrase, leaving the set as it was' {
        $before = Get-Content -Raw "$set/vdisk-backup.json"
        { Backup-VDisk $image -Destination $set -ErrorAction Stop } | Should -Throw -ErrorId (Get-ErrorId 'PassphraseRequired' 'Backup-VDisk')
        { Backup-VDisk $image -Destination $set -Passphrase $wrong -ErrorAction Stop } | Should -Throw -ErrorId (Get-ErrorId 'WrongPassphrase' 'Backup-VDisk')
        Get-Content -Raw "$set/vdisk-backup.json" | Should -Be $before
        (Get-ChildItem -LiteralPath $set -File).Count | Should -Be 7 # three images, three hash files, the manifest
    }

    It 'never shows the passphrase in any output, warning, verbose or error record' {
        $all = & {
            Backup-VDisk $image -Destination $set -Passphrase $wrong -Verbose -ErrorAction Continue
            Restore-VDiskBackup $set -DestinationPath "$folder/v.raw" -Passphrase $pw -Verbose -Force
        } *>&1 | Out-String
        $all | Should -Not -Match ([regex]::Escape($secret))
        $all | Should -Not -Match 'not the passphrase'
        $all | Should -Match 'WrongPassphrase|not the backup set'
    }
}

Describe 'Encrypted sets and the other backup cmdlets' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $image = "$folder/vm.qcow2"
        $null = New-VDisk -Path $image -SizeBytes 8MB
        Set-Content -LiteralPath "$folder/pass.txt" -Value "$secret`n" -NoNewline
        $credential = [pscredential]::new('backup', $pw)
    }

    It 'takes the passphrase as a PSCredential or from a file, and refuses -Encrypt into a set in clear' {
        Invoke-QemuIo $image @('write -P 0x61 0 1M')
        $first = Backup-VDisk $image -Destination "$folder/a" -Encrypt -Passphrase $credential -IterTimeMilliseconds 10
        Start-Sleep -Milliseconds 1100
        Invoke-QemuIo $image @('write -P 0x62 2M 1M')
        $second = Backup-VDisk $image -Destination "$folder/a" -PassphraseFile "$folder/pass.txt"
        $second.Kind | Should -Be 'Incremental'
        $second.Encrypted | Should -BeTrue
        $null = Backup-VDisk $image -Destination "$folder/clear"
        { Backup-VDisk $image -Destination "$folder/clear" -Encrypt -Passphrase $pw -IterTimeMilliseconds 10 -ErrorAction Stop } |
            Should -Throw -ErrorId (Get-ErrorId 'InvalidArgument' 'Backup-VDisk')
    }

    It 'prunes an encrypted set with its passphrase: the kept point stays encrypted and restores; without it nothing changes' {
        $set = "$folder/p"
        $shas = @()
        foreach ($round in 0..2) {
            Invoke-QemuIo $image @("write -P 0x$((33 + $round).ToString('x2')) $($round)M 512k")
            $shas += Get-Sha $image
            $encrypt = if ($round -eq 0) { @{ Encrypt = $true; IterTimeMilliseconds = 10 } } else { @{} }
            $null = Backup-VDisk $image -Destination $set -Passphrase $pw @encrypt
            Start-Sleep -Milliseconds 1100
        }
        $before = Get-Content -Raw "$set/vdisk-backup.json"
        { Remove-VDiskBackup $set -KeepLast 1 -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId (Get-ErrorId 'PassphraseRequired' 'Remove-VDiskBackup')
        Get-Content -Raw "$set/vdisk-backup.json" | Should -Be $before
        $null = Remove-VDiskBackup $set -KeepLast 1 -Passphrase $pw -Confirm:$false
        $kept = @(Get-VDiskBackup $set)
        $kept.Count | Should -Be 1
        $kept[0].Encrypted | Should -BeTrue
        (Get-VDisk $kept[0].Path).Encrypted | Should -BeTrue
        Restore-VDiskBackup $set -DestinationPath "$folder/pruned.raw" -Passphrase $pw
        (Get-FileHash "$folder/pruned.raw" -Algorithm SHA256).Hash | Should -Be $shas[2]
        (Test-VDiskBackup $set -Passphrase $pw).Intact | Should -BeTrue
    }
}
