// Set-VDiskAttachment: moves a VM disk to another bus (issue 10; libvirt formatdomain "Hard drives, floppy disks,
// CDROMs" target/address, "Controllers" virtio-scsi driver queues/iothread): virtio-blk, virtio-scsi, sata or ide.
// DomainXml.WithBus edits only the changed tags (a virtio-scsi controller is reused or added, the disk gets a free
// target name and drive unit), the QEMU driver's rules are checked first (a refused edit changes nothing), -WhatIf
// shows the line diff, a file keeps a backup unless -NoBackup, and a domain is defined through virsh like
// Set-VDiskCache; a running domain applies it at its next start, or now with -Restart.
using System.Management.Automation;
using VDisk.Engine.Libvirt;

namespace VDisk.PowerShell.Commands;

/// <summary>Moves a disk of a libvirt domain or domain XML file to another bus.</summary>
[Cmdlet(VerbsCommon.Set, "VDiskAttachment", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(VDiskAttachment))]
public sealed class SetVDiskAttachmentCommand : DomainEditCmdletBase
{
    /// <summary>The disk's target name (vda, sda ...).</summary>
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    public string Target { get; set; } = string.Empty;

    /// <summary>The bus to move the disk to: VirtioBlk, VirtioScsi, Sata or Ide.</summary>
    [Parameter(Mandatory = true)]
    [ValidateSet(nameof(DiskBus.VirtioBlk), nameof(DiskBus.VirtioScsi), nameof(DiskBus.Sata), nameof(DiskBus.Ide))]
    public DiskBus Bus { get; set; }

    /// <summary>Queues: of the disk for virtio-blk, of the controller for virtio-scsi.</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int Queues { get; set; }

    /// <summary>The IOThread: of the disk for virtio-blk, of the controller for virtio-scsi; the domain must define it.</summary>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int IoThread { get; set; }

    /// <summary>Moves one disk.</summary>
    protected override void ProcessRecord()
    {
        if (NamedDomain() is not var (isFile, name)) return;
        var virsh = new Virsh(isFile ? null : Uri);
        if (Load(isFile, name, virsh) is not { } original) return;
        int? queues = IsBound(nameof(Queues)) ? Queues : null;
        int? ioThread = IsBound(nameof(IoThread)) ? IoThread : null;
        string newTarget = Target;
        var edited = Attempt(name, () => original.WithBus(Target, Bus, queues, ioThread, out newTarget));
        if (edited is null || Attempt(name, () => { DomainRules.Ensure(edited, new[] { newTarget }); return edited; }) is null) return;
        string what = $"Move disk {Target} to bus {Bus}" + (newTarget != Target ? $" as {newTarget}" : "");
        if (!Apply(isFile, name, virsh, original, edited, what, "the new bus is")) return;
        if (PassThru) WriteObject(VDiskAttachment.From(edited.Disk(newTarget), isFile ? name : null, isFile ? null : virsh.Uri));
    }
}
