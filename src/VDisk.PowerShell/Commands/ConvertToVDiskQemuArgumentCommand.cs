// ConvertTo-VDiskQemuArgument: disk attachments as qemu-system arguments (qemu-system "Block device options"):
// -blockdev/-device as libvirt uses them, or -Style Drive for the -drive form, with the cache flags libvirt gives
// each mode. All piped attachments form one command line (one virtio-scsi controller, distinct node names).
using System.Management.Automation;
using VDisk.Engine.Libvirt;

namespace VDisk.PowerShell.Commands;

/// <summary>Writes disk attachments as QEMU command-line arguments.</summary>
[Cmdlet(VerbsData.ConvertTo, "VDiskQemuArgument")]
[OutputType(typeof(string))]
public sealed class ConvertToVDiskQemuArgumentCommand : VDiskCmdletBase
{
    /// <summary>The attachments (New-VDiskAttachment or Get-VDiskAttachment output).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true)]
    public VDiskAttachment[] InputObject { get; set; } = Array.Empty<VDiskAttachment>();

    /// <summary>BlockDev (default: -blockdev and -device) or Drive (-drive and -device).</summary>
    [Parameter]
    public QemuArgumentStyle Style { get; set; } = QemuArgumentStyle.BlockDev;

    private readonly List<DiskAttachment> _disks = new();

    /// <summary>Gathers the attachments.</summary>
    protected override void ProcessRecord() => _disks.AddRange(InputObject.Select(a => a.ToEngine()));

    /// <summary>Writes the arguments, one string per argument (splat them with @, or -join ' ' to read them).</summary>
    protected override void EndProcessing()
    {
        if (Attempt("QEMU arguments", () => DiskDefinitions.QemuArguments(_disks, Style)) is { } args)
            foreach (string argument in args) WriteObject(argument);
    }
}
