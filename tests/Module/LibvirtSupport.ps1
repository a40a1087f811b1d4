# Dot-sourced by the live libvirt tests: starts a private virtlogd and libvirtd (pid files and sockets in a folder of
# their own, TOOLCHAIN.md "A live libvirt + QEMU for tests"), defines tiny TCG domains, asks QEMU for its cache flags,
# and stops domains and daemons by pid. Outside CI a missing libvirt skips the tests loudly; in CI they fail.

# Why the live tests cannot run here, or $null when they can.
function Get-LibvirtProblem {
    foreach ($tool in 'virsh', 'libvirtd', 'virtlogd', 'qemu-system-x86_64', 'qemu-img') {
        if (-not (Get-Command $tool -CommandType Application -ErrorAction Ignore)) { return "$tool is not installed" }
    }
    if (-not (Get-Content /etc/passwd | Select-String '^libvirt-qemu:')) { return 'the libvirt-qemu user does not exist (the QEMU driver needs it)' }
    if (-not (Select-String -Path /etc/libvirt/qemu.conf -Pattern '^user = "root"' -Quiet -ErrorAction Ignore)) { return '/etc/libvirt/qemu.conf does not set user = "root"' }
    if ((id -u) -ne '0') { return 'not root (qemu:///system needs a privileged libvirtd)' }
    $null
}

# Starts virtlogd and libvirtd with pid files and a private socket folder; returns @{ Folder; Uri; Pids; RunDir }.
# -Isolated (where a mount namespace can be made, else as without it): libvirtd's fixed state folders (/run/libvirt,
# /etc/libvirt/qemu, /var/lib/libvirt/qemu) are bind mounts of folders of its own, so it runs beside another test
# run's libvirtd (without, the second one fails on /run/libvirt/*/driver.pid); QEMU pid files are then in RunDir/qemu.
function Start-TestLibvirt([switch] $Isolated) {
    $folder = Join-Path ([System.IO.Path]::GetTempPath()) "vdisk-libvirt-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    New-Item -ItemType Directory -Path $folder | Out-Null
    Set-Content -LiteralPath "$folder/libvirtd.conf" -Value "unix_sock_dir = `"$folder`""
    $daemon = @{ Folder = $folder; Uri = "qemu:///system?socket=$folder/libvirt-sock"; Pids = @(); RunDir = '/run/libvirt' }
    if ($Isolated) {
        & unshare -m --propagation private true *> $null
        $Isolated = $LASTEXITCODE -eq 0
    }
    if ($Isolated) {
        foreach ($name in 'run', 'etc-qemu', 'lib-qemu') { New-Item -ItemType Directory -Path "$folder/$name" | Out-Null }
        Add-Content -LiteralPath "$folder/libvirtd.conf" -Value "log_outputs = `"3:file:$folder/libvirtd.err`""
        $daemon.RunDir = "$folder/run"
        $script = "mount --bind '$folder/run' /run/libvirt && mount --bind '$folder/etc-qemu' /etc/libvirt/qemu && " +
            "mount --bind '$folder/lib-qemu' /var/lib/libvirt/qemu && virtlogd -d -p '$folder/virtlogd.pid' && " +
            "libvirtd -d -f '$folder/libvirtd.conf' -p '$folder/libvirtd.pid'"
        & unshare -m --propagation private sh -c $script *> "$folder/unshare.log"
    }
    else {
        Start-Process setsid -ArgumentList 'virtlogd', '-p', "$folder/virtlogd.pid" -RedirectStandardOutput "$folder/virtlogd.log" -RedirectStandardError "$folder/virtlogd.err"
        Start-Process setsid -ArgumentList 'libvirtd', '-f', "$folder/libvirtd.conf", '-p', "$folder/libvirtd.pid" -RedirectStandardOutput "$folder/libvirtd.log" -RedirectStandardError "$folder/libvirtd.err"
    }
    $deadline = (Get-Date).AddSeconds(30)
    while ((Get-Date) -lt $deadline) {
        if ((Test-Path "$folder/libvirt-sock") -and (Test-Path "$folder/libvirtd.pid")) {
            & virsh -q -c $daemon.Uri list --all --name *> $null
            if ($LASTEXITCODE -eq 0) { break }
        }
        Start-Sleep -Milliseconds 200
    }
    $daemon.Pids = @('virtlogd', 'libvirtd') | ForEach-Object { if (Test-Path "$folder/$_.pid") { [int](Get-Content "$folder/$_.pid") } }
    if ($daemon.Pids.Count -ne 2) {
        # Whichever started is stopped, so a failed start leaves nothing running.
        foreach ($id in $daemon.Pids) { Stop-Process -Id $id -ErrorAction Ignore }
        throw "libvirtd did not start: $(Get-Content "$folder/libvirtd.err", "$folder/unshare.log" -Raw -ErrorAction Ignore)"
    }
    $daemon
}

# Destroys the given domains (by the pid of their QEMU process) and stops the daemons by pid.
function Stop-TestLibvirt($Daemon, [string[]] $Domains) {
    if (-not $Daemon) { return }
    foreach ($domain in $Domains) {
        $pidFile = "$(if ($Daemon.RunDir) { $Daemon.RunDir } else { '/run/libvirt' })/qemu/$domain.pid"
        $qemuPid = if (Test-Path $pidFile) { [int](Get-Content $pidFile) } # read first: destroy removes the file
        & virsh -q -c $Daemon.Uri destroy $domain *> $null
        & virsh -q -c $Daemon.Uri undefine $domain *> $null
        if ($qemuPid -and (Get-Process -Id $qemuPid -ErrorAction Ignore)) { Stop-Process -Id $qemuPid -Force -ErrorAction Ignore }
    }
    [array]::Reverse($Daemon.Pids) # libvirtd first, then virtlogd
    foreach ($id in $Daemon.Pids) {
        Stop-Process -Id $id -ErrorAction Ignore
        try { (Get-Process -Id $id -ErrorAction Stop).WaitForExit(10000) | Out-Null } catch { }
    }
}

# A tiny TCG domain (256 MiB, no OS) with a virtio-blk disk (vda) and a virtio-scsi disk (sda) on new qcow2 images.
function New-TestDomainXml([string] $Name, [string] $Folder) {
    foreach ($disk in 'blk', 'scsi') { & qemu-img create -q -f qcow2 "$Folder/$Name-$disk.qcow2" 16M }
    @"
<domain type='qemu'>
  <name>$Name</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <iothreads>1</iothreads>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <!-- the system disk -->
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' io='native'/>
      <source file='$Folder/$Name-blk.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='scsi' model='virtio-scsi'/>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='$Folder/$Name-scsi.qcow2'/>
      <target dev='sda' bus='scsi'/>
    </disk>
  </devices>
</domain>
"@
}

# query-block of a running domain: a hashtable from qdev (or device) name to its inserted.cache flags.
function Get-QemuCacheFlags($Daemon, [string] $Domain) {
    $json = & virsh -q -c $Daemon.Uri qemu-monitor-command $Domain '{"execute":"query-block"}'
    if ($LASTEXITCODE -ne 0) { throw "query-block failed: $json" }
    $flags = @{}
    foreach ($block in ($json | ConvertFrom-Json).return) {
        $name = if ($block.device) { $block.device } else { $block.qdev }
        $flags[$name] = $block.inserted.cache
    }
    $flags
}
