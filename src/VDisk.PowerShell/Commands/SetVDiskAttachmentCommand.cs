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
public sealed class SetVDiskAttachmentCommand : VDiskCmdletBase
{
    /// <summary>The domain (libvirt, through virsh).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public string? Domain { get; set; }

    /// <summary>A domain XML file to edit instead of a libvirt domain.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public string? DomainXmlPath { get; set; }

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

    /// <summary>The libvirt connection (default: $env:LIBVIRT_DEFAULT_URI, else qemu:///system).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public string? Uri { get; set; }

    /// <summary>With -DomainXmlPath: no backup of the original file.</summary>
    [Parameter]
    public SwitchParameter NoBackup { get; set; }

    /// <summary>Restarts a running domain (ACPI shutdown, then start) so the change applies now.</summary>
    [Parameter]
    public SwitchParameter Restart { get; set; }

    /// <summary>With -Restart: powers the domain off (virsh destroy) when it has not shut down within -TimeoutSec.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>With -Restart: how long to wait for the guest to shut down (default 120 s).</summary>
    [Parameter]
    [ValidateRange(0, 86400)]
    public int TimeoutSec { get; set; } = 120;

    /// <summary>Writes the moved attachment.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    /// <summary>Checks that the domain is named one way only.</summary>
    protected override void BeginProcessing()
    {
        if (IsBound(nameof(Domain)) && IsBound(nameof(DomainXmlPath)))
            ThrowTerminatingError(VDiskErrors.InvalidArgument("Give -Domain or -DomainXmlPath, not both.", null));
    }

    /// <summary>Moves one disk.</summary>
    protected override void ProcessRecord()
    {
        bool isFile = !string.IsNullOrEmpty(DomainXmlPath);
        string? name = isFile ? ResolveLiteralPath(DomainXmlPath!) : Domain;
        if (string.IsNullOrEmpty(name))
        {
            if (!isFile) WriteError(VDiskErrors.InvalidArgument("Give -Domain or -DomainXmlPath (or pipe Get-VDiskAttachment output).", null));
            return;
        }
        var virsh = new Virsh(isFile ? null : Uri);
        var original = Attempt(name, () => isFile ? DomainFiles.Load(name) : DomainXml.Parse(virsh.DumpXml(name), $"domain {name}"));
        if (original is null) return;
        int? queues = IsBound(nameof(Queues)) ? Queues : null;
        int? ioThread = IsBound(nameof(IoThread)) ? IoThread : null;
        string newTarget = Target;
        var edited = Attempt(name, () => original.WithBus(Target, Bus, queues, ioThread, out newTarget));
        if (edited is null || Attempt(name, () => { DomainRules.Ensure(edited, new[] { newTarget }); return edited; }) is null) return;

        string where = isFile ? $"domain XML file {name}" : $"domain '{name}' ({virsh.Uri})";
        string what = $"Move disk {Target} to bus {Bus}" + (newTarget != Target ? $" as {newTarget}" : "");
        var diff = LineDiff.Compare(original.Text, edited.Text);
        string description = $"{what} of {where}" + (diff.Count == 0 ? " (already so: nothing changes)" : ":\n" + string.Join("\n", diff)) +
            (Restart && !isFile ? "\nand restart it if running" : "");
        if (!ShouldProcess(description, $"{what} of {where}?", "Set-VDiskAttachment")) return;

        if (diff.Count > 0)
        {
            if (isFile)
            {
                if (Attempt(name, () => Tuple.Create(DomainFiles.Save(name, edited, !NoBackup))) is not { } saved) return;
                if (saved.Item1 is { } backup) WriteVerbose($"The original of {name} is kept as {backup}.");
            }
            else if (Attempt(name, () => { virsh.Define(edited.Text); return edited; }) is null) return;
        }
        if (!isFile && Attempt(name, () => (object)virsh.IsActive(name)) is true)
        {
            if (Restart)
            {
                if (Attempt(name, () => RunCancellable(cancel => { virsh.Restart(name, TimeSpan.FromSeconds(TimeoutSec), Force, cancel); return edited; })) is null) return;
            }
            else if (diff.Count > 0)
            {
                WriteWarning($"Domain '{name}' is running: the new bus is defined and applies at its next start (or now with -Restart).");
            }
        }
        if (PassThru) WriteObject(VDiskAttachment.From(edited.Disk(newTarget), isFile ? name : null, isFile ? null : virsh.Uri));
    }
}
