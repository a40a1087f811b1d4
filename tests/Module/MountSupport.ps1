# Shared by the Mount-VDisk tests (dot-sourced in BeforeAll after TestSupport.ps1): files with known content and their
# sha256 tree, a GPT disk with an ext4 and a FAT partition, process and mount-point checks, and what the kernel's loop
# mount can do here, found independently of the module (CAP_SYS_ADMIN in /proc/self/status, /dev/loop-control,
# losetup, /proc/filesystems) so tests can state what Mount-VDisk must do with a non-ext file system.

# Files with known content under $Root (some nested); returns relative path -> sha256.
function New-FileSet([string] $Root, [int] $Seed) {
    $random = [System.Random]::new($Seed)
    $names = "readme-$Seed.txt", "docs/report-$Seed.bin", "docs/deep/nested/data-$Seed.bin", "empty-$Seed.dat", "big-$Seed.bin"
    $sizes = 1234, 70000, 4096, 0, 3MB
    for ($i = 0; $i -lt $names.Count; $i++) {
        $path = Join-Path $Root $names[$i]
        $null = New-Item -ItemType Directory -Force -Path (Split-Path $path)
        $bytes = [byte[]]::new($sizes[$i])
        $random.NextBytes($bytes)
        [System.IO.File]::WriteAllBytes($path, $bytes)
    }
    Get-TreeHashes $Root
}

# relative path -> sha256 of every file under $Root (lost+found left out).
function Get-TreeHashes([string] $Root) {
    $hashes = @{}
    foreach ($file in Get-ChildItem -LiteralPath $Root -Recurse -File -Force) {
        $relative = [System.IO.Path]::GetRelativePath($Root, $file.FullName)
        if ($relative -like 'lost+found*') { continue }
        $hashes[$relative] = (Get-FileHash -LiteralPath $file.FullName -Algorithm SHA256).Hash
    }
    $hashes
}

# A 100 MiB raw disk with a GPT: partition 1 (1 MiB, 64 MiB) an ext4 made from $Source, partition 2 a FAT.
$script:ExtStart = 1MB
function New-PartitionedDisk([string] $Raw, [string] $Source) {
    & truncate -s 100M $Raw
    "label: gpt`nstart=2048, size=131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=`"data`"`nstart=133120, size=20480, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7`n" |
        & sfdisk -q $Raw
    if ($LASTEXITCODE) { throw 'sfdisk failed' }
    & mkfs.vfat --offset 133120 $Raw 10240 2>&1 | Out-Null
    Set-Ext4 $Raw $Source
}

# (Re)writes partition 1 of $Raw with an ext4 made by mkfs.ext4 -d from $Source.
function Set-Ext4([string] $Raw, [string] $Source) {
    $ext = "$Raw.ext4"
    Remove-Item -LiteralPath $ext -ErrorAction Ignore
    & mkfs.ext4 -q -d $Source $ext 64M
    if ($LASTEXITCODE) { throw 'mkfs.ext4 failed' }
    & dd "if=$ext" "of=$Raw" bs=1M seek=1 conv=notrunc status=none
    if ($LASTEXITCODE) { throw 'dd failed' }
    Remove-Item -LiteralPath $ext
}

function Test-PidRunning([int] $ProcessId) {
    $stat = "/proc/$ProcessId/stat"
    if (-not (Test-Path $stat)) { return $false }
    $text = try { Get-Content -Raw $stat -ErrorAction Stop } catch { return $false }
    $text.Substring($text.LastIndexOf(')') + 2, 1) -ne 'Z'
}

function Get-SessionId([int] $ProcessId) {
    $text = Get-Content -Raw "/proc/$ProcessId/stat"
    ($text.Substring($text.LastIndexOf(')') + 2) -split ' ')[3]
}

function Test-MountPoint([string] $Folder) {
    $full = [System.IO.Path]::TrimEndingDirectorySeparator([System.IO.Path]::GetFullPath($Folder))
    [bool](Get-Content /proc/self/mountinfo | Where-Object { ($_ -split ' ')[4] -eq $full })
}

# Stops what a test left (a failing test): our mounts first, then any recorded pid still running.
function Stop-Leftovers([int[]] $Pids) {
    Dismount-VDisk -All -ErrorAction SilentlyContinue
    foreach ($p in $Pids) { if (Test-PidRunning $p) { Stop-Process -Id $p -Force -ErrorAction SilentlyContinue } }
}

# Whether this process may use the kernel's loop mount, and which file system drivers the kernel has.
$script:LoopUsable = $false
if ($IsLinux) {
    $capEff = [Convert]::ToUInt64((((Get-Content /proc/self/status) -match '^CapEff:') -split '\s+')[1], 16)
    $script:LoopUsable = ($capEff -band (1 -shl 21)) -ne 0 -and (Test-Path /dev/loop-control) -and
        [bool](Get-Command losetup -CommandType Application -ErrorAction Ignore)
}
$script:KernelFileSystems = if ($IsLinux) { @(Get-Content /proc/filesystems | ForEach-Object { ($_ -split "`t")[-1].Trim() }) } else { @() }

# What Mount-VDisk must say about a partition of kernel type $KernelType: $null when it must mount it.
function Get-ExpectedLoopSkip([string] $KernelType) {
    if (-not $script:LoopUsable) { return 'needs the kernel''s loop mount, which cannot be used here' }
    if ($script:KernelFileSystems -notcontains $KernelType) { return "the kernel has no $KernelType driver" }
    $null
}

# Loop devices whose backing file lies under a Mount-VDisk private folder of process $ProcessId.
function Get-LoopDevicesOf([int] $ProcessId) {
    foreach ($backing in Get-ChildItem /sys/block -Filter 'loop*' -ErrorAction Ignore) {
        $file = Join-Path $backing.FullName 'loop/backing_file'
        if ((Test-Path $file) -and (Get-Content -Raw $file) -match "vdisk-mount-$ProcessId-") { "/dev/$($backing.Name)" }
    }
}
