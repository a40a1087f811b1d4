# Merge-VDiskChain (commit, -Pull) and Set-VDisk (safe and unsafe rebase, flatten): issue 8 "Backing chains" and its
# proof. Chains of depth 1, 2 and 10 are made by qemu-img create -b/-F with data written by qemu-io into every layer;
# after each operation the guest content (sha256 of qemu-img convert -O raw) is what it should be, qemu-img check is
# clean and qemu-img info --backing-chain agrees with Get-VDiskChain. Also: loops and missing files, -WhatIf, -PassThru,
# relative paths, confirmation, progress, and images a running qemu holds.

BeforeDiscovery {
    . (Join-Path $PSScriptRoot 'QemuSkip.ps1')
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestSupport.ps1')

    # qemu-io writes into layer $Index of a chain of $Size bytes at 64 KiB units scattered by the index: 64 KiB of its
    # own pattern, an unaligned 1.5 KiB write (copy-on-write of a partial cluster) and, above the base, 32 KiB of
    # zeroes over what the layers beneath may hold.
    function Write-Layer([string] $Path, [int] $Index, [long] $Size) {
        $units = [int]($Size / 64KB) - 1
        $pattern = 0x10 + $Index
        $commands = @(
            "write -P $pattern $((($Index * 37 + 3) % $units) * 64KB) 64k"
            "write -P $($pattern + 0x80) $((($Index * 53 + 17) % $units) * 64KB + 4097 + 512 * $Index) 1536"
        )
        if ($Index -gt 0) { $commands += "write -z $((($Index * 29 + 41) % $units) * 64KB + 16KB) 32k" }
        Invoke-QemuIo $Path $commands
    }

    # A qcow2 chain in $Folder: base.qcow2 and $Depth overlays l1.qcow2 ... each backed by the one before (stored
    # relative, with its format, as qemu-img create -b -F stores it), each written before the next is created over it.
    # The top may be larger than the base ($TopSize). Returns the full paths, base first.
    function New-Chain([string] $Folder, [int] $Depth, [long] $Size = 4MB, [long] $TopSize = $Size) {
        $paths = @("$Folder/base.qcow2")
        Invoke-QemuImg @('create', '-q', '-f', 'qcow2', $paths[0], $Size) | Out-Null
        Write-Layer $paths[0] 0 $Size
        for ($i = 1; $i -le $Depth; $i++) {
            $paths += "$Folder/l$i.qcow2"
            $size = if ($i -eq $Depth) { $TopSize } else { $Size }
            Invoke-QemuImg @('create', '-q', '-f', 'qcow2', '-b', "$(Split-Path -Leaf $paths[$i - 1])", '-F', 'qcow2', $paths[$i], $size) | Out-Null
            Write-Layer $paths[$i] $i $size
        }
        , $paths
    }

    # The chains of 4 MiB that tests start from, made by New-Chain once per depth in a folder outside TestDrive (on a
    # busy machine each qemu-img or qemu-io run costs a tenth of a second), then copied into $Folder for each test.
    # Returns the copies' full paths, base first.
    $templateRoot = Join-Path ([IO.Path]::GetTempPath()) "vdisk-chains-$([guid]::NewGuid().ToString('N'))"
    function Copy-Chain([string] $Folder, [int] $Depth) {
        $template = Join-Path $templateRoot $Depth
        if (-not (Test-Path -LiteralPath $template)) {
            $null = New-Item -ItemType Directory -Path $template
            $null = New-Chain $template $Depth
        }
        Copy-Item -Path "$template/*" -Destination $Folder
        $paths = @("$Folder/base.qcow2")
        for ($i = 1; $i -le $Depth; $i++) { $paths += "$Folder/l$i.qcow2" }
        , $paths
    }

    # sha256 of what the guest sees through the image's chain, as qemu-img reads it.
    function Get-GuestSha([string] $Path) {
        $raw = "$Path.guest.raw"
        Invoke-QemuImg @('convert', '-O', 'raw', $Path, $raw) | Out-Null
        try { (Get-FileHash -LiteralPath $raw -Algorithm SHA256).Hash } finally { Remove-Item -LiteralPath $raw }
    }

    # Name=hash of every file in the folder: what -WhatIf and a refused operation must leave as it was.
    function Get-FolderState([string] $Folder) {
        Get-ChildItem -LiteralPath $Folder -File | Sort-Object Name | ForEach-Object { "$($_.Name)=$((Get-FileHash -LiteralPath $_.FullName).Hash)" }
    }

    function Assert-CheckClean([string] $Path) {
        $check = Get-QemuCheck $Path
        $check.corruptions | Should -BeNullOrEmpty -Because "qemu-img check $Path"
        $check.leaks | Should -BeNullOrEmpty -Because "qemu-img check $Path"
    }

    # Get-VDiskChain lists the layers qemu-img info --backing-chain lists, with the same names, formats and sizes.
    function Assert-ChainAgrees([string] $Path) {
        $qemu = @((Invoke-QemuImg @('info', '--backing-chain', '--output=json', $Path)) -join "`n" | ConvertFrom-Json)
        $ours = @(Get-VDiskChain -LiteralPath $Path)
        $ours.Count | Should -Be $qemu.Count
        for ($i = 0; $i -lt $qemu.Count; $i++) {
            $ours[$i].Path | Should -Be ([IO.Path]::GetFullPath($qemu[$i].filename))
            "$($ours[$i].Format)" | Should -Be $qemu[$i].format
            $ours[$i].VirtualSize | Should -Be $qemu[$i].'virtual-size'
            $ours[$i].BackingPath | Should -Be $qemu[$i].'backing-filename'
            "$($ours[$i].BackingFormat)" | Should -Be "$($qemu[$i].'backing-filename-format')"
        }
    }

    # The backing file name an image stores, as qemu-img reads it ($null for none).
    function Get-StoredBacking([string] $Path) {
        (Get-QemuInfo $Path).'backing-filename'
    }

    # A pwsh runspace with the module and no host to ask the user: a confirmation prompt there is an error.
}

AfterAll {
    Remove-Item -LiteralPath $templateRoot -Recurse -Force -ErrorAction Ignore
}

Describe 'Merge-VDiskChain commits' -Skip:$SkipQemu {
    It 'commits a chain of depth <_> into the top''s backing image and deletes the top' -ForEach 1, 2, 10 {
        $depth = $_
        $chain = Copy-Chain (New-TestFolder) $depth
        $top, $backing = $chain[-1], $chain[-2]
        $expected = Get-GuestSha $top
        $baseHash = (Get-FileHash -LiteralPath $chain[0]).Hash

        Merge-VDiskChain -Path $top -Confirm:$false

        $top | Should -Not -Exist
        Get-GuestSha $backing | Should -Be $expected
        Assert-CheckClean $backing
        Assert-ChainAgrees $backing
        if ($depth -gt 1) { (Get-FileHash -LiteralPath $chain[0]).Hash | Should -Be $baseHash -Because 'only the backing image is written' }
    }

    It 'commits every layer of a chain of depth 10 into -BasePath and deletes them all' {
        $chain = Copy-Chain (New-TestFolder) 10
        $expected = Get-GuestSha $chain[-1]
        Merge-VDiskChain $chain[-1] -BasePath $chain[0] -Confirm:$false
        $chain[1..10] | ForEach-Object { $_ | Should -Not -Exist }
        Get-GuestSha $chain[0] | Should -Be $expected
        Assert-CheckClean $chain[0]
        Assert-ChainAgrees $chain[0]
        @(Get-VDiskChain $chain[0]).Count | Should -Be 1
    }

    It 'commits into an intermediate -BasePath, leaving the layers beneath it as they were' {
        $chain = Copy-Chain (New-TestFolder) 10
        $expected = Get-GuestSha $chain[-1]
        $beneath = $chain[0..3] | ForEach-Object { (Get-FileHash -LiteralPath $_).Hash }
        Merge-VDiskChain $chain[-1] -BasePath $chain[4] -Confirm:$false
        $chain[5..10] | ForEach-Object { $_ | Should -Not -Exist }
        Get-GuestSha $chain[4] | Should -Be $expected
        $chain[0..3] | ForEach-Object { (Get-FileHash -LiteralPath $_).Hash } | Should -Be $beneath
        Assert-CheckClean $chain[4]
        Assert-ChainAgrees $chain[4]
        (Get-VDiskChain $chain[4]).Path | Should -Be $chain[4..0]
    }

    It 'keeps the overlays with -KeepOverlays, warning that those in between changed' {
        $chain = Copy-Chain (New-TestFolder) 2
        $expected = Get-GuestSha $chain[2]
        $topHash = (Get-FileHash -LiteralPath $chain[2]).Hash
        Merge-VDiskChain $chain[2] -BasePath $chain[0] -KeepOverlays -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue
        $chain | ForEach-Object { $_ | Should -Exist }
        (Get-FileHash -LiteralPath $chain[2]).Hash | Should -Be $topHash
        Get-GuestSha $chain[2] | Should -Be $expected
        Get-GuestSha $chain[0] | Should -Be $expected
        $warnings | Should -HaveCount 1
        "$($warnings[0])" | Should -BeLike "*$($chain[1])*"
        Assert-CheckClean $chain[0]
        Assert-ChainAgrees $chain[2]
    }

    It 'grows a base smaller than the top to the top''s size' {
        $chain = New-Chain (New-TestFolder) 1 -Size 2MB -TopSize 6MB
        Invoke-QemuIo $chain[1] @('write -P 0x77 5M 256k')
        $expected = Get-GuestSha $chain[1]
        Merge-VDiskChain $chain[1] -Confirm:$false
        (Get-QemuInfo $chain[0]).'virtual-size' | Should -Be 6MB
        Get-GuestSha $chain[0] | Should -Be $expected
        Assert-CheckClean $chain[0]
    }

    It 'writes the chain left, from the base, with -PassThru (from the top with -KeepOverlays)' {
        $chain = Copy-Chain (New-TestFolder) 2
        $kept = Merge-VDiskChain $chain[2] -KeepOverlays -PassThru -Confirm:$false
        $kept[0] | Should -BeOfType VDisk.PowerShell.VDiskChainNode
        $kept.Path | Should -Be $chain[2..0]
        $merged = Merge-VDiskChain $chain[2] -BasePath $chain[0] -PassThru -Confirm:$false
        $merged | Should -BeOfType VDisk.PowerShell.VDiskChainNode
        @($merged).Count | Should -Be 1
        $merged.Path | Should -Be $chain[0]
        $merged.Depth | Should -Be 0
    }

    It 'refuses to delete an overlay holding internal snapshots, and commits with -KeepOverlays' {
        $chain = Copy-Chain (New-TestFolder) 1
        Invoke-QemuImg @('snapshot', '-c', 'keep-me', $chain[1]) | Out-Null
        $before = Get-FolderState (Split-Path $chain[0])
        Merge-VDiskChain $chain[1] -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'InvalidArgument' 'Merge-VDiskChain')
        "$($err[0])" | Should -BeLike "*$($chain[1])*snapshot*"
        Get-FolderState (Split-Path $chain[0]) | Should -Be $before
        $expected = Get-GuestSha $chain[1]
        Merge-VDiskChain $chain[1] -KeepOverlays -Confirm:$false
        Get-GuestSha $chain[0] | Should -Be $expected
    }
}

Describe 'Merge-VDiskChain -Pull' -Skip:$SkipQemu {
    It 'makes the top of a chain of depth <_> standalone with the same content, leaving its backing files as they were' -ForEach 1, 2, 10 {
        $chain = Copy-Chain (New-TestFolder) $_
        $expected = Get-GuestSha $chain[-1]
        $beneath = $chain[0..($chain.Count - 2)] | ForEach-Object { (Get-FileHash -LiteralPath $_).Hash }

        $result = Merge-VDiskChain $chain[-1] -Pull -PassThru -Confirm:$false

        $result.Path | Should -Be $chain[-1]
        $result.BackingPath | Should -BeNullOrEmpty
        Get-StoredBacking $chain[-1] | Should -BeNullOrEmpty
        Get-GuestSha $chain[-1] | Should -Be $expected
        $chain[0..($chain.Count - 2)] | ForEach-Object { (Get-FileHash -LiteralPath $_).Hash } | Should -Be $beneath
        Assert-CheckClean $chain[-1]
        Assert-ChainAgrees $chain[-1]
    }

    It 'pulls only the layers above -BasePath and keeps that base as the backing file (depth 10)' {
        $chain = Copy-Chain (New-TestFolder) 10
        $expected = Get-GuestSha $chain[10]
        Merge-VDiskChain $chain[10] -Pull -BasePath $chain[4] -Confirm:$false
        Get-StoredBacking $chain[10] | Should -Be $chain[4] -Because 'a base typed absolute is stored absolute'
        (Get-VDiskChain $chain[10]).Path | Should -Be (@($chain[10]) + $chain[4..0])
        Get-GuestSha $chain[10] | Should -Be $expected
        Assert-CheckClean $chain[10]
        Assert-ChainAgrees $chain[10]
    }

    It 'takes piped Get-ChildItem output (PSPath)' {
        $chain = Copy-Chain (New-TestFolder) 2
        $expected = Get-GuestSha $chain[2]
        Get-Item -LiteralPath $chain[2] | Merge-VDiskChain -Pull -Confirm:$false
        Get-StoredBacking $chain[2] | Should -BeNullOrEmpty
        Get-GuestSha $chain[2] | Should -Be $expected
    }

    It 'refuses -KeepOverlays with -Pull before reading any image (InvalidArgument)' {
        { Merge-VDiskChain (Join-Path (New-TestFolder) 'none.qcow2') -Pull -KeepOverlays -ErrorAction Stop } |
            Should -Throw -ErrorId (Get-ErrorId 'InvalidArgument' 'Merge-VDiskChain')
    }
}

Describe 'Set-VDisk' -Skip:$SkipQemu {
    BeforeAll {
        # Another base with other content: the same writes as the chains' base, then more.
        $otherTemplate = Join-Path (New-TestFolder) 'other.qcow2'
        Invoke-QemuImg @('create', '-q', '-f', 'qcow2', $otherTemplate, 4MB) | Out-Null
        Write-Layer $otherTemplate 0 4MB
        Invoke-QemuIo $otherTemplate @('write -P 0x99 1M 512k', 'write -P 0x9a 3584k 64k')
    }

    BeforeEach {
        $folder = New-TestFolder
        $chain = Copy-Chain $folder 2
        $top = $chain[2]
        $other = "$folder/other.qcow2"
        Copy-Item -LiteralPath $otherTemplate -Destination $other
        $expected = Get-GuestSha $top
    }

    It 'rebases safely onto another image: the guest content stays, the other image is not written' {
        $otherHash = (Get-FileHash -LiteralPath $other).Hash
        Set-VDisk $top -BackingPath $other
        Get-StoredBacking $top | Should -Be $other
        (Get-QemuInfo $top).'backing-filename-format' | Should -Be 'qcow2'
        Get-GuestSha $top | Should -Be $expected
        (Get-FileHash -LiteralPath $other).Hash | Should -Be $otherHash
        Assert-CheckClean $top
        Assert-ChainAgrees $top
    }

    It 'rebases safely onto an image further down its own chain' {
        Set-VDisk $top -BackingPath $chain[0]
        (Get-VDiskChain $top).Path | Should -Be @($top, $chain[0])
        Get-GuestSha $top | Should -Be $expected
        Assert-CheckClean $top
        Assert-ChainAgrees $top
    }

    It 'only rewrites the reference with -Unsafe, as qemu-img rebase -u does' {
        $reference = "$folder/reference.qcow2"
        Copy-Item -LiteralPath $top -Destination $reference
        Invoke-QemuImg @('rebase', '-u', '-b', 'other.qcow2', '-F', 'qcow2', $reference) | Out-Null
        Set-VDisk $top -BackingPath $other -Unsafe -Confirm:$false
        Get-StoredBacking $top | Should -Be $other
        Get-GuestSha $top | Should -Be (Get-GuestSha $reference)
        Get-GuestSha $top | Should -Not -Be $expected
        Assert-CheckClean $top
        Assert-ChainAgrees $top
    }

    It 'flattens with -BackingPath '''' and writes the VDiskInfo with -PassThru' {
        $info = Set-VDisk $top -BackingPath '' -PassThru
        $info | Should -BeOfType VDisk.PowerShell.VDiskInfo
        $info.Path | Should -Be $top
        $info.BackingPath | Should -BeNullOrEmpty
        Get-StoredBacking $top | Should -BeNullOrEmpty
        Get-GuestSha $top | Should -Be $expected
        Assert-CheckClean $top
        Assert-ChainAgrees $top
    }

    It 'only drops the reference with -Unsafe -BackingPath '''', as qemu-img rebase -u -b "" does' {
        $reference = "$folder/reference.qcow2"
        Copy-Item -LiteralPath $top -Destination $reference
        Invoke-QemuImg @('rebase', '-u', '-b', '', $reference) | Out-Null
        Get-VDisk $top | Set-VDisk -BackingPath '' -Unsafe -Confirm:$false
        Get-StoredBacking $top | Should -BeNullOrEmpty
        Get-GuestSha $top | Should -Be (Get-GuestSha $reference)
        Assert-CheckClean $top
    }

    It 'resolves relative paths against the PowerShell location and stores the backing name relative to the image' {
        $null = New-Item -ItemType Directory -Path "$folder/sub"
        Move-Item -LiteralPath $top -Destination "$folder/sub/top.qcow2"
        Set-VDisk "$folder/sub/top.qcow2" -BackingPath $chain[1] -Unsafe -Confirm:$false
        [Environment]::CurrentDirectory | Should -Not -Be $folder
        Push-Location -LiteralPath $folder
        try {
            Set-VDisk sub/top.qcow2 -BackingPath other.qcow2
        } finally {
            Pop-Location
        }
        Get-StoredBacking "$folder/sub/top.qcow2" | Should -Be '../other.qcow2'
        Get-GuestSha "$folder/sub/top.qcow2" | Should -Be $expected
        Assert-ChainAgrees "$folder/sub/top.qcow2"
    }

    It 'refuses a new backing file that does not exist (BackingFileMissing) and changes nothing' {
        $before = Get-FolderState $folder
        Set-VDisk $top -BackingPath "$folder/missing.qcow2" -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BackingFileMissing' 'Set-VDisk')
        $err[0].TargetObject | Should -Be $top
        "$($err[0])" | Should -BeLike "*$folder/missing.qcow2*"
        Get-FolderState $folder | Should -Be $before
    }

    It 'refuses a new backing file whose chain leads back to the image (BackingChainLoop) and changes nothing' {
        $before = Get-FolderState $folder
        Set-VDisk $chain[0] -BackingPath $top -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BackingChainLoop' 'Set-VDisk')
        $err[0].TargetObject | Should -Be $chain[0]
        "$($err[0])" | Should -BeLike '*loop*'
        Get-FolderState $folder | Should -Be $before
    }

    It 'refuses an image that is not qcow2 (UnsupportedFeature) and goes on with the next' {
        $raw = New-PatternImage "$folder/disk.img" 4MB @(0)
        Set-VDisk $raw, $top -BackingPath $other -ErrorVariable err -ErrorAction SilentlyContinue
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'UnsupportedFeature' 'Set-VDisk')
        $err[0].TargetObject | Should -Be $raw
        Get-StoredBacking $top | Should -Be $other
    }

    It 'refuses -BackingFormat without a backing path before reading any image (InvalidArgument)' {
        { Set-VDisk $top -BackingPath '' -BackingFormat Qcow2 -ErrorAction Stop } | Should -Throw -ErrorId (Get-ErrorId 'InvalidArgument' 'Set-VDisk')
    }

    It 'asks before an -Unsafe rebase (as ConfirmImpact High), but not before a safe one' {
        $before = Get-FolderState $folder
        $ps = New-ModuleRunspace
        try {
            $null = $ps.AddCommand('Set-VDisk').AddParameter('LiteralPath', $top).AddParameter('BackingPath', $other).AddParameter('Unsafe')
            $null = $ps.Invoke()
            $ps.Streams.Error[0].FullyQualifiedErrorId | Should -BeLike 'HostFunctionNotImplemented,*SetVDiskCommand'
            Get-FolderState $folder | Should -Be $before
        } finally {
            $ps.Dispose()
        }
        $ps = New-ModuleRunspace
        try {
            $null = $ps.AddCommand('Set-VDisk').AddParameter('LiteralPath', $top).AddParameter('BackingPath', $chain[0]).AddParameter('Unsafe').AddParameter('Force')
            $null = $ps.Invoke()
            $ps.Streams.Error | Should -BeNullOrEmpty
            Get-StoredBacking $top | Should -Be $chain[0]
        } finally {
            $ps.Dispose()
        }
        $ps = New-ModuleRunspace
        try {
            $null = $ps.AddScript('$ConfirmPreference = "None"; Set-VDisk -LiteralPath $args[0] -BackingPath $args[1] -Unsafe').AddArgument($top).AddArgument($other)
            $null = $ps.Invoke()
            $ps.Streams.Error | Should -BeNullOrEmpty
            Get-StoredBacking $top | Should -Be $other
        } finally {
            $ps.Dispose()
        }
        $ps = New-ModuleRunspace
        try {
            $null = $ps.AddCommand('Set-VDisk').AddParameter('LiteralPath', $top).AddParameter('BackingPath', '')
            $null = $ps.Invoke()
            $ps.Streams.Error | Should -BeNullOrEmpty
            Get-StoredBacking $top | Should -BeNullOrEmpty
        } finally {
            $ps.Dispose()
        }
    }
}

Describe 'Broken chains' -Skip:$SkipQemu {
    BeforeAll {
        # a.qcow2 backs b.qcow2, and b.qcow2 backs a.qcow2.
        $loopFolder = New-TestFolder
        Invoke-QemuImg @('create', '-q', '-f', 'qcow2', "$loopFolder/a.qcow2", 4MB) | Out-Null
        Invoke-QemuImg @('create', '-q', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', "$loopFolder/b.qcow2") | Out-Null
        Invoke-QemuImg @('rebase', '-u', '-b', 'b.qcow2', '-F', 'qcow2', "$loopFolder/a.qcow2") | Out-Null
        # An overlay whose backing file was deleted.
        $missingFolder = New-TestFolder
        $orphan = (Copy-Chain $missingFolder 1)[1]
        Remove-Item -LiteralPath "$missingFolder/base.qcow2"
    }

    It '<Cmdlet> <Label> on a loop (a backs b backs a) is BackingChainLoop naming the chain; nothing changes' -ForEach @(
        @{ Cmdlet = 'Merge-VDiskChain'; Label = '(commit)'; Arguments = @{ Confirm = $false } }
        @{ Cmdlet = 'Merge-VDiskChain'; Label = '-Pull'; Arguments = @{ Pull = $true; Confirm = $false } }
        @{ Cmdlet = 'Set-VDisk'; Label = '-BackingPath '''''; Arguments = @{ BackingPath = '' } }
    ) {
        $before = Get-FolderState $loopFolder
        & $Cmdlet -LiteralPath "$loopFolder/b.qcow2" @Arguments -ErrorVariable err -ErrorAction SilentlyContinue
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BackingChainLoop' $Cmdlet)
        $err[0].TargetObject | Should -Be "$loopFolder/b.qcow2"
        "$($err[0])" | Should -BeLike "*$loopFolder/b.qcow2 -> $loopFolder/a.qcow2 -> $loopFolder/b.qcow2*"
        Get-FolderState $loopFolder | Should -Be $before
    }

    It '<Cmdlet> <Label> with a missing backing file is BackingFileMissing naming it; nothing changes' -ForEach @(
        @{ Cmdlet = 'Merge-VDiskChain'; Label = '(commit)'; Arguments = @{ Confirm = $false } }
        @{ Cmdlet = 'Merge-VDiskChain'; Label = '-Pull'; Arguments = @{ Pull = $true; Confirm = $false } }
        @{ Cmdlet = 'Set-VDisk'; Label = '-BackingPath '''''; Arguments = @{ BackingPath = '' } }
    ) {
        $before = Get-FolderState $missingFolder
        & $Cmdlet -LiteralPath $orphan @Arguments -ErrorVariable err -ErrorAction SilentlyContinue
        $err | Should -HaveCount 1
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BackingFileMissing' $Cmdlet)
        $err[0].TargetObject | Should -Be $orphan
        "$($err[0])" | Should -BeLike "*$missingFolder/base.qcow2*not found*"
        Get-FolderState $missingFolder | Should -Be $before
    }

    It 'repairs a missing backing file with Set-VDisk -Unsafe' {
        $folder = New-TestFolder
        $chain = Copy-Chain $folder 1
        $expected = Get-GuestSha $chain[1]
        Move-Item -LiteralPath $chain[0] -Destination "$folder/moved.qcow2"
        Set-VDisk $chain[1] -BackingPath "$folder/moved.qcow2" -Unsafe -Confirm:$false
        Get-GuestSha $chain[1] | Should -Be $expected
        Assert-ChainAgrees $chain[1]
    }

    It 'a standalone image has nothing to commit into (NoBackingFile)' {
        $chain = Copy-Chain (New-TestFolder) 0
        Merge-VDiskChain $chain[0] -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'NoBackingFile' 'Merge-VDiskChain')
        $err[0].TargetObject | Should -Be $chain[0]
    }

    It 'a -BasePath not below the top is BaseNotInChain, naming the chain; a missing one is FileNotFound' {
        $folder = New-TestFolder
        $chain = Copy-Chain $folder 2
        $elsewhere = "$folder/elsewhere.qcow2"
        Invoke-QemuImg @('create', '-q', '-f', 'qcow2', $elsewhere, 4MB) | Out-Null
        $before = Get-FolderState $folder
        foreach ($base in $elsewhere, $chain[2]) {
            Merge-VDiskChain $chain[2] -BasePath $base -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BaseNotInChain' 'Merge-VDiskChain')
            "$($err[0])" | Should -BeLike "*$($chain[2]) -> $($chain[1]) -> $($chain[0])*"
        }
        Merge-VDiskChain $chain[2] -Pull -BasePath $elsewhere -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'BaseNotInChain' 'Merge-VDiskChain')
        foreach ($pull in $false, $true) {
            Merge-VDiskChain $chain[2] -Pull:$pull -BasePath "$folder/missing.qcow2" -Confirm:$false -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'FileNotFound' 'Merge-VDiskChain')
            "$($err[0])" | Should -BeLike "*missing.qcow2' does not exist*"
        }
        Get-FolderState $folder | Should -Be $before
    }
}

Describe 'Chain operations that change nothing' -Skip:$SkipQemu {
    BeforeAll {
        $folder = New-TestFolder
        $chain = Copy-Chain $folder 2
        $other = "$folder/other.qcow2"
        Invoke-QemuImg @('create', '-q', '-f', 'qcow2', $other, 4MB) | Out-Null
        $before = Get-FolderState $folder
    }

    It 'changes no file with -WhatIf: <Label>' -ForEach @(
        @{ Label = 'commit'; Command = { Merge-VDiskChain $chain[2] -WhatIf } }
        @{ Label = 'commit into -BasePath'; Command = { Merge-VDiskChain $chain[2] -BasePath $chain[0] -WhatIf } }
        @{ Label = 'pull'; Command = { Merge-VDiskChain $chain[2] -Pull -WhatIf } }
        @{ Label = 'safe rebase'; Command = { Set-VDisk $chain[2] -BackingPath $other -WhatIf } }
        @{ Label = 'unsafe rebase'; Command = { Set-VDisk $chain[2] -BackingPath $other -Unsafe -WhatIf } }
        @{ Label = 'flatten'; Command = { Set-VDisk $chain[2] -BackingPath '' -WhatIf } }
    ) {
        & $Command
        Get-FolderState $folder | Should -Be $before
    }

    It 'names the overlays to commit and delete in the -WhatIf message' {
        $text = Invoke-ChildPwsh "Import-Module '$((Get-Module VDisk).Path)'; Merge-VDiskChain '$($chain[2])' -BasePath '$($chain[0])' -WhatIf"
        $text | Should -BeLike "*Commit '$($chain[2])', '$($chain[1])' into '$($chain[0])', then delete*"
        Get-FolderState $folder | Should -Be $before
    }

    It 'asks before a commit (ConfirmImpact High): where no one can answer, nothing changes' {
        $ps = New-ModuleRunspace
        try {
            $null = $ps.AddCommand('Merge-VDiskChain').AddParameter('LiteralPath', $chain[2])
            $null = $ps.Invoke()
            $ps.Streams.Error[0].FullyQualifiedErrorId | Should -BeLike 'HostFunctionNotImplemented,*MergeVDiskChainCommand'
        } finally {
            $ps.Dispose()
        }
        Get-FolderState $folder | Should -Be $before
    }
}

Describe 'Chain operations on images in use, relative paths, progress' -Skip:$SkipQemu {
    # The image given is l1 or l2 of base <- l1 <- l2; the qemu holds l2 (where a VM runs) or the base (committed into).
    It 'refuses <Label> while a qemu holds the <Held> (ImageInUse) and changes nothing' -ForEach @(
        @{ Label = 'a commit'; Held = 'top'; Cmdlet = 'Merge-VDiskChain'; Image = 2; Parameters = @{ Confirm = $false } }
        @{ Label = 'a commit'; Held = 'base'; Cmdlet = 'Merge-VDiskChain'; Image = 1; Parameters = @{ Confirm = $false } }
        @{ Label = 'a pull'; Held = 'top'; Cmdlet = 'Merge-VDiskChain'; Image = 2; Parameters = @{ Pull = $true; Confirm = $false } }
        @{ Label = 'a safe rebase'; Held = 'top'; Cmdlet = 'Set-VDisk'; Image = 2; Parameters = @{ BackingPath = 'base.qcow2' } }
        @{ Label = 'an unsafe rebase'; Held = 'top'; Cmdlet = 'Set-VDisk'; Image = 2; Parameters = @{ BackingPath = 'base.qcow2'; Unsafe = $true; Confirm = $false } }
    ) {
        $folder = New-TestFolder
        $chain = Copy-Chain $folder 2
        $held = if ($Held -eq 'top') { $chain[2] } else { $chain[0] }
        $holder = Start-QemuHolder $held 'qcow2'
        Push-Location -LiteralPath $folder
        try {
            $before = Get-FolderState $folder
            & $Cmdlet -LiteralPath $chain[$Image] @Parameters -ErrorVariable err -ErrorAction SilentlyContinue
            $err | Should -HaveCount 1
            $err[0].FullyQualifiedErrorId | Should -Be (Get-ErrorId 'ImageInUse' $Cmdlet)
            "$($err[0])" | Should -BeLike "*$held*in use*"
            Get-FolderState $folder | Should -Be $before
        } finally {
            Pop-Location
            Stop-QemuHolder $holder
        }
    }

    It 'resolves -Path and -BasePath against the PowerShell location' {
        $folder = New-TestFolder
        $chain = Copy-Chain $folder 2
        $expected = Get-GuestSha $chain[2]
        [Environment]::CurrentDirectory | Should -Not -Be $folder
        Push-Location -LiteralPath $folder
        try {
            Merge-VDiskChain l2.qcow2 -BasePath ./base.qcow2 -Confirm:$false
        } finally {
            Pop-Location
        }
        $chain[1..2] | ForEach-Object { $_ | Should -Not -Exist }
        Get-GuestSha $chain[0] | Should -Be $expected
    }

    It 'stores a relative -Pull -BasePath relative to the top''s folder' {
        $folder = New-TestFolder
        $chain = Copy-Chain $folder 2
        $expected = Get-GuestSha $chain[2]
        Push-Location -LiteralPath $folder
        try {
            Merge-VDiskChain l2.qcow2 -Pull -BasePath base.qcow2 -Confirm:$false
        } finally {
            Pop-Location
        }
        Get-StoredBacking $chain[2] | Should -Be 'base.qcow2'
        Get-GuestSha $chain[2] | Should -Be $expected
        Assert-ChainAgrees $chain[2]
    }

    It 'reports progress for <Cmdlet> <Label> and completes it' -ForEach @(
        @{ Cmdlet = 'Merge-VDiskChain'; Label = '(commit)'; Parameters = @{ Confirm = $false } }
        @{ Cmdlet = 'Merge-VDiskChain'; Label = '-Pull'; Parameters = @{ Pull = $true; Confirm = $false } }
        @{ Cmdlet = 'Set-VDisk'; Label = '-BackingPath '''''; Parameters = @{ BackingPath = '' } }
    ) {
        $chain = Copy-Chain (New-TestFolder) 2
        $ps = New-ModuleRunspace
        try {
            $null = $ps.AddCommand($Cmdlet).AddParameter('LiteralPath', $chain[2]).AddParameters($Parameters)
            $null = $ps.Invoke()
            $ps.Streams.Error | Should -BeNullOrEmpty
            $records = @($ps.Streams.Progress | Where-Object Activity -EQ $Cmdlet)
            $records.Count | Should -BeGreaterThan 0
            $records[-1].RecordType | Should -Be 'Completed'
        } finally {
            $ps.Dispose()
        }
    }
}
