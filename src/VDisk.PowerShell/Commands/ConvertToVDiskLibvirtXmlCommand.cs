// ConvertTo-VDiskLibvirtXml: a disk attachment as libvirt domain XML (formatdomain "Hard drives, floppy disks, CDROMs";
// a virtio-scsi disk is preceded by the virtio-scsi controller it needs), for virsh attach-device or a domain file.
using System.Management.Automation;
using VDisk.Engine.Libvirt;

namespace VDisk.PowerShell.Commands;

/// <summary>Writes disk attachments as libvirt domain XML.</summary>
[Cmdlet(VerbsData.ConvertTo, "VDiskLibvirtXml")]
[OutputType(typeof(string))]
public sealed class ConvertToVDiskLibvirtXmlCommand : VDiskCmdletBase
{
    /// <summary>The attachment (New-VDiskAttachment or Get-VDiskAttachment output).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    public VDiskAttachment InputObject { get; set; } = null!;

    /// <summary>Writes the XML of one attachment.</summary>
    protected override void ProcessRecord()
    {
        if (Attempt(InputObject.Path ?? InputObject.Target, () => DiskDefinitions.LibvirtXml(InputObject.ToEngine())) is { } xml) WriteObject(xml);
    }
}
