# LUKS-encrypted qcow2 through the cmdlets (issue 13): New-VDisk -Encrypt with a SecureString, a PSCredential and a
# passphrase file; Get-VDisk's encryption properties; Convert-VDisk both ways checked by qemu-img compare; error ids
# (WrongPassphrase, PassphraseRequired, compression with encryption) with no output left; Set-VDisk key slots;
# Compare-VDisk and Export-VDisk of an encrypted image; and the passphrase never in any output stream.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')
    $script:secret = 'Zq7-secret-Passphrase-unique'
    $script:secret2 = 'Second-Zq7-passphrase'
    $script:pw = ConvertTo-SecureString $secret -AsPlainText -Force
    $script:pw2 = ConvertTo-SecureString $secret2 -AsPlainText -Force
    $script:fast = @{ IterTimeMilliseconds = 10 }

    # qemu-img arguments opening an encrypted qcow2 with a secret.
    # The error id of the first error a command reports, terminating or not.
    function Get-FailureId([scriptblock] $Command) {
        try { $records = @(& $Command 2>&1) } catch { return $_.FullyQualifiedErrorId }
        @($records | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })[0].FullyQualifiedErrorId
    }

    function Get-SecretArgs([string] $Path, [string] $Secret) {
        @('--object', "secret,id=s,data=$Secret", '--image-opts', "driver=qcow2,file.filename=$Path,encrypt.key-secret=s")
    }
}

Describe 'Encrypted images through the cmdlets' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $plain = New-PatternImage "$folder/plain.raw" 8MB 0, 3MB, 7MB
    }

    It 'creates an encrypted image from a SecureString that qemu-img opens with the secret, and Get-VDisk shows it' {
        $image = "$folder/new-secure.qcow2"
        $info = New-VDisk $image 4MB -Encrypt -Passphrase $pw @fast
        $info.Encrypted | Should -BeTrue
        $info.EncryptionFormat | Should -Be 'Luks'
        $info.Cipher | Should -Be 'aes-256-xts-plain64'
        $info.KeySlots | Should -Be @(0)
        $got = Get-VDisk $image
        $got.Encrypted | Should -BeTrue
        $got.Cipher | Should -Be 'aes-256-xts-plain64'
        Invoke-QemuImg (@('check') + (Get-SecretArgs $image $secret)) | Out-Null
        $null = Invoke-QemuImg (@('check') + (Get-SecretArgs $image 'not-it')) -AllowedExitCodes 1
    }

    It 'takes a PSCredential (its password) and another cipher' {
        $image = "$folder/new-cred.qcow2"
        $credential = [pscredential]::new('anyone', $pw2)
        $null = New-VDisk $image 4MB -Encrypt -Passphrase $credential -Cipher aes-128-cbc-essiv:sha256 -HashAlgorithm sha512 @fast
        (Get-VDisk $image).Cipher | Should -Be 'aes-128-cbc-essiv:sha256'
        Invoke-QemuImg (@('check') + (Get-SecretArgs $image $secret2)) | Out-Null
    }

    It 'takes the first line of -PassphraseFile; qemu-img reads a key file verbatim (as the help says)' {
        $image = "$folder/new-file.qcow2"
        Set-Content "$folder/pw.txt" "$secret`nsecond line is ignored"
        $null = New-VDisk $image 4MB -Encrypt -PassphraseFile "$folder/pw.txt" @fast
        $file = @('--object', "secret,id=s,file=$folder/one-line.txt", '--image-opts', "driver=qcow2,file.filename=$image,encrypt.key-secret=s")
        [System.IO.File]::WriteAllText("$folder/one-line.txt", $secret)
        Invoke-QemuImg (@('check') + $file) | Out-Null
        [System.IO.File]::WriteAllText("$folder/one-line.txt", "$secret`n") # QEMU keeps the line ending: another passphrase
        $null = Invoke-QemuImg (@('check') + $file) -AllowedExitCodes 1
        (Get-VDisk $image).Encrypted | Should -BeTrue
        $null = Convert-VDisk $image "$folder/from-file.raw" -DestinationFormat Raw -SourcePassphraseFile "$folder/one-line.txt"
        "$folder/from-file.raw" | Should -Exist
    }

    It 'encrypts with Convert-VDisk and decrypts back, each checked by qemu-img compare' {
        $enc = "$folder/enc.qcow2"
        $null = Convert-VDisk $plain $enc -Encrypt -Passphrase $pw @fast
        (Get-VDisk $enc).Encrypted | Should -BeTrue
        Invoke-QemuImg (@('compare') + (Get-SecretArgs $enc $secret) + @("driver=raw,file.filename=$plain")) | Out-Null
        $back = "$folder/back.raw"
        $null = Convert-VDisk $enc $back -DestinationFormat Raw -SourcePassphrase $pw
        Invoke-QemuImg @('compare', '-f', 'raw', '-F', 'raw', $plain, $back) | Out-Null
        # The encrypted file does not hold the guest's bytes in clear.
        $pattern = '5A' * 4096
        [Convert]::ToHexString([System.IO.File]::ReadAllBytes($enc)).Contains($pattern) | Should -BeFalse
        [Convert]::ToHexString([System.IO.File]::ReadAllBytes($plain)).Contains($pattern) | Should -BeTrue
    }

    It 'refuses -Compress with -Encrypt' {
        Get-FailureId { Convert-VDisk $plain "$folder/cz.qcow2" -Encrypt -Passphrase $pw -Compress @fast } |
            Should -Be (Get-ErrorId 'InvalidArgument' 'Convert-VDisk')
        "$folder/cz.qcow2" | Should -Not -Exist
    }

    It 'reports WrongPassphrase and PassphraseRequired, and Convert-VDisk leaves no output' {
        $enc = "$folder/err.qcow2"
        $null = Convert-VDisk $plain $enc -Encrypt -Passphrase $pw @fast
        $before = @(Get-ChildItem $folder).Count
        Get-FailureId { Convert-VDisk $enc "$folder/wrong.raw" -DestinationFormat Raw -SourcePassphrase $pw2 } |
            Should -Be (Get-ErrorId 'WrongPassphrase' 'Convert-VDisk')
        "$folder/wrong.raw" | Should -Not -Exist
        Get-FailureId { Convert-VDisk $enc "$folder/none.raw" -DestinationFormat Raw } |
            Should -Be (Get-ErrorId 'PassphraseRequired' 'Convert-VDisk')
        "$folder/none.raw" | Should -Not -Exist
        @(Get-ChildItem $folder).Count | Should -Be $before
        Get-FailureId { New-VDisk "$folder/nopw.qcow2" 4MB -Encrypt } | Should -Be (Get-ErrorId 'PassphraseRequired' 'New-VDisk')
        "$folder/nopw.qcow2" | Should -Not -Exist
    }

    It 'adds and removes passphrases with Set-VDisk' {
        $image = "$folder/slots.qcow2"
        $null = Convert-VDisk $plain $image -Encrypt -Passphrase $pw @fast
        Set-VDisk $image -Passphrase $pw -AddPassphrase $pw2 @fast
        (Get-VDisk $image).KeySlots | Should -Be @(0, 1)
        Invoke-QemuImg (@('compare') + (Get-SecretArgs $image $secret2) + @("driver=raw,file.filename=$plain")) | Out-Null
        Set-VDisk $image -Passphrase $pw2 -RemovePassphrase $pw
        (Get-VDisk $image).KeySlots | Should -Be @(1)
        $null = Invoke-QemuImg (@('check') + (Get-SecretArgs $image $secret)) -AllowedExitCodes 1
        Get-FailureId { Set-VDisk $image -Passphrase $pw2 -RemoveKeySlot 1 } | Should -Be (Get-ErrorId 'InvalidArgument' 'Set-VDisk')
        (Get-VDisk $image).KeySlots | Should -Be @(1)
    }

    It 'compares an encrypted image with its plaintext with -SourcePassphrase' {
        $enc = "$folder/cmp.qcow2"
        $null = Convert-VDisk $plain $enc -Encrypt -Passphrase $pw @fast
        (Compare-VDisk $enc $plain -SourcePassphrase $pw).Equal | Should -BeTrue
        Set-FileBytes $plain 100 ([byte[]](0x77))
        try { (Compare-VDisk $enc $plain -SourcePassphrase $pw).Equal | Should -BeFalse }
        finally { Set-FileBytes $plain 100 ([byte[]](0x5a)) }
    }

    It 'maps an encrypted image without a passphrase; reading its partitions needs one' {
        $enc = "$folder/map.qcow2"
        $null = Convert-VDisk $plain $enc -Encrypt -Passphrase $pw @fast
        $map = @(Get-VDiskMap $enc)
        @($map | Where-Object Data).Count | Should -BeGreaterThan 0
        ($map | Where-Object Data | Measure-Object Length -Sum).Sum | Should -BeGreaterOrEqual 3MB
        Get-FailureId { Get-VDiskPartition $enc } | Should -Be (Get-ErrorId 'PassphraseRequired' 'Get-VDiskPartition')
        Get-FailureId { Get-VDiskPartition $enc -Passphrase $pw2 } | Should -Be (Get-ErrorId 'WrongPassphrase' 'Get-VDiskPartition')
        Get-FailureId { Get-VDiskPartition $enc -Passphrase $pw } | Should -BeNullOrEmpty
    }

    It 'exports an encrypted image whose plaintext qemu-img convert reads over NBD' {
        $enc = "$folder/exp.qcow2"
        $null = Convert-VDisk $plain $enc -Encrypt -Passphrase $pw @fast
        Get-FailureId { Export-VDisk $enc -Port 0 } | Should -Be (Get-ErrorId 'PassphraseRequired' 'Export-VDisk')
        $e = Export-VDisk $enc -Port 0 -Passphrase $pw
        try {
            Invoke-QemuImg @('convert', '-O', 'raw', $e.Uri, "$folder/exported.raw")
        } finally { $e | Stop-VDiskExport }
        Invoke-QemuImg @('compare', '-f', 'raw', '-F', 'raw', $plain, "$folder/exported.raw") | Out-Null
    }

    It 'never shows the passphrase in any output, error, warning, verbose or progress record' {
        $ProgressPreference = 'Continue'
        $records = & {
            New-VDisk "$folder/leak.qcow2" 4MB -Encrypt -Passphrase $pw @fast -Verbose
            Convert-VDisk $plain "$folder/leak2.qcow2" -Encrypt -Passphrase $pw @fast -Verbose -PassThru
            try { Convert-VDisk "$folder/leak2.qcow2" "$folder/leak3.raw" -DestinationFormat Raw -SourcePassphrase $pw2 -Verbose } catch { $_ }
            try { Convert-VDisk "$folder/leak2.qcow2" "$folder/leak4.raw" -DestinationFormat Raw -Verbose } catch { $_ }
            Set-VDisk "$folder/leak.qcow2" -Passphrase $pw -AddPassphrase $pw2 @fast -Verbose -PassThru
            try { New-VDisk "$folder/leak5.qcow2" 4MB -Encrypt -Verbose } catch { $_ }
            Set-VDisk "$folder/leak.qcow2" -Passphrase $pw2 -RemovePassphrase $pw2 -Verbose -WhatIf
            Compare-VDisk "$folder/leak2.qcow2" $plain -SourcePassphrase $pw -Verbose
            Get-VDisk "$folder/leak.qcow2" -Verbose | Format-List * | Out-String
        } *>&1
        $records.Count | Should -BeGreaterThan 5
        @($records | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] }).Count | Should -BeGreaterThan 1
        $text = ($records | ForEach-Object {
            $_ | Out-String
            if ($_ -is [System.Management.Automation.ErrorRecord]) { $_.Exception.ToString(); $_.TargetObject; $_.ErrorDetails }
            if ($_ -is [System.Management.Automation.ProgressRecord]) { $_.Activity; $_.StatusDescription; $_.CurrentOperation }
            if ($_ -is [System.Management.Automation.InformationalRecord]) { $_.Message }
        }) -join "`n"
        $text | Should -Not -BeNullOrEmpty
        $text | Should -Not -Match ([regex]::Escape($secret))
        $text | Should -Not -Match ([regex]::Escape($secret2))
        $text | Should -Match 'leak'

        # Progress is not a redirectable stream: read its records from a runspace of their own.
        $ps = New-ModuleRunspace
        $null = $ps.AddScript('param($p, $s, $d) $ProgressPreference = "Continue"; Convert-VDisk $p "$d/progress.qcow2" -Encrypt -Passphrase $s -IterTimeMilliseconds 10; Convert-VDisk "$d/progress.qcow2" "$d/progress.raw" -DestinationFormat Raw -SourcePassphrase $s').AddArgument($plain).AddArgument($pw).AddArgument($folder)
        try {
            $null = $ps.Invoke()
            $ps.Streams.Error.Count | Should -Be 0
            $ps.Streams.Progress.Count | Should -BeGreaterThan 0
            $progress = ($ps.Streams.Progress | ForEach-Object { $_.Activity; $_.StatusDescription; $_.CurrentOperation }) -join "`n"
            $progress | Should -Not -Match ([regex]::Escape($secret))
        } finally { $ps.Dispose() }
        "$folder/progress.raw" | Should -Exist
    }
}
