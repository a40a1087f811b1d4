// New-VDiskAttachment: describes how an image should be attached to a VM (issue 10), for ConvertTo-VDiskLibvirtXml and
// ConvertTo-VDiskQemuArgument. The format is probed from the image's content unless given; the disk rules libvirt's
// QEMU driver applies to one disk on its own (DomainRules.CheckDisk) are checked here.
using System.Management.Automation;
using VDisk.Engine.Core;
using VDisk.Engine.Libvirt;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;

namespace VDisk.PowerShell.Commands;

/// <summary>Describes a new disk attachment of an image.</summary>
[Cmdlet(VerbsCommon.New, "VDiskAttachment")]
[OutputType(typeof(VDiskAttachment))]
public sealed class NewVDiskAttachmentCommand : VDiskCmdletBase
{
    /// <summary>The image file or block device.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [Alias("PSPath", "FullName")]
    public string Path { get; set; } = string.Empty;

    /// <summary>The bus (default VirtioBlk).</summary>
    [Parameter]
    [ValidateSet(nameof(DiskBus.VirtioBlk), nameof(DiskBus.VirtioScsi), nameof(DiskBus.Sata), nameof(DiskBus.Ide), nameof(DiskBus.Usb))]
    public DiskBus Bus { get; set; } = DiskBus.VirtioBlk;

    /// <summary>The target name (default: vda for virtio-blk, sda otherwise).</summary>
    [Parameter]
    public string? Target { get; set; }

    /// <summary>The image format; by default it is probed from the image's content.</summary>
    [Parameter]
    public VDiskFormat Format { get; set; }

    /// <summary>The cache mode (default: not set, QEMU's writeback).</summary>
    [Parameter]
    public CacheMode CacheMode { get; set; }

    /// <summary>The I/O mode (default: not set, QEMU's threads).</summary>
    [Parameter]
    public DiskIoMode IoMode { get; set; }

    /// <summary>Passes the guest's discard (TRIM) requests to the image (unmap) or not (ignore).</summary>
    [Parameter]
    [ValidateSet("unmap", "ignore")]
    public string? Discard { get; set; }

    /// <summary>virtio-blk queues.</summary>
    [Parameter]
    [ValidateRange(1, 1024)]
    public int Queues { get; set; }

    /// <summary>The IOThread id (virtio-blk).</summary>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int IoThread { get; set; }

    /// <summary>The boot order.</summary>
    [Parameter]
    [ValidateRange(1, int.MaxValue)]
    public int BootOrder { get; set; }

    /// <summary>Attaches the disk read-only.</summary>
    [Parameter]
    public SwitchParameter ReadOnly { get; set; }

    /// <summary>Writes one VDiskAttachment for the image.</summary>
    protected override void ProcessRecord()
    {
        if (ResolveLiteralPath(Path) is not { } full) return;
        var format = Attempt(full, () => IsBound(nameof(Format)) ? FormatProbe.Name(Format.ToEngine()) : FormatProbe.Name(InspectImage.Run(full, null, Cancellation).Format));
        if (format is null) return;
        var disk = new DiskAttachment
        {
            Target = Target ?? (Bus == DiskBus.VirtioBlk ? "vda" : "sda"),
            Bus = Bus,
            Path = full,
            Format = format,
            CacheMode = IsBound(nameof(CacheMode)) ? CacheMode : null,
            IoMode = IsBound(nameof(IoMode)) ? IoMode : null,
            Discard = Discard,
            Queues = IsBound(nameof(Queues)) ? Queues : null,
            IoThread = IsBound(nameof(IoThread)) ? IoThread : null,
            BootOrder = IsBound(nameof(BootOrder)) ? BootOrder : null,
            ReadOnly = ReadOnly,
        };
        var broken = DomainRules.CheckDisk(disk, null, null).ToList();
        if (broken.Count > 0)
        {
            WriteError(VDiskErrors.FromException(new VDiskException(VDiskErrorKind.DomainRuleViolated, full,
                $"{full}: libvirt's QEMU driver would refuse this attachment: {string.Join(" ", broken.Select(v => $"[{v.Rule}] {v.Message}"))}"), full)!);
            return;
        }
        WriteObject(VDiskAttachment.From(disk, null, null));
    }
}
