// What Get-VDiskAttachment and New-VDiskAttachment write: one disk of a VM as libvirt formatdomain "Hard drives,
// floppy disks, CDROMs" defines it. Domain, Target, DomainXmlPath and Uri let Set-VDiskCache bind by property name.
using VDisk.Engine.Libvirt;
using VDisk.Engine.Storage;

namespace VDisk.PowerShell;

/// <summary>One disk attachment of a domain (or a new one, from New-VDiskAttachment).</summary>
public sealed class VDiskAttachment
{
    /// <summary>The domain's name (empty for a new attachment).</summary>
    public string Domain { get; init; } = string.Empty;

    /// <summary>The target device name (vda, sda ...).</summary>
    public string Target { get; init; } = string.Empty;

    /// <summary>The bus: VirtioBlk, VirtioScsi, Scsi (another controller model), Sata, Ide, Usb or Other.</summary>
    public DiskBus Bus { get; init; }

    /// <summary>disk, cdrom, floppy or lun.</summary>
    public string Device { get; init; } = "disk";

    /// <summary>The image file or block device (a network name or volume for other sources; null for an empty cdrom).</summary>
    public string? Path { get; init; }

    /// <summary>The image format libvirt opens it as (qcow2, raw ...), or null when not given.</summary>
    public string? Format { get; init; }

    /// <summary>The cache mode, or null when not set (QEMU's default: Writeback).</summary>
    public CacheMode? CacheMode { get; init; }

    /// <summary>The I/O engine, or null when not set (QEMU's default: Threads).</summary>
    public DiskIoMode? IoMode { get; init; }

    /// <summary>unmap or ignore, or null when not set.</summary>
    public string? Discard { get; init; }

    /// <summary>virtio-blk queues, or null.</summary>
    public int? Queues { get; init; }

    /// <summary>The IOThread id, or null.</summary>
    public int? IoThread { get; init; }

    /// <summary>True for a read-only disk.</summary>
    public bool ReadOnly { get; init; }

    /// <summary>The boot order, or null.</summary>
    public int? BootOrder { get; init; }

    /// <summary>The domain XML file it was read from, or null when it came from libvirt (virsh).</summary>
    public string? DomainXmlPath { get; init; }

    /// <summary>The libvirt connection it was read through, or null for a file.</summary>
    public string? Uri { get; init; }

    internal static VDiskAttachment From(DiskAttachment d, string? domainXmlPath, string? uri) => new()
    {
        Domain = d.Domain,
        Target = d.Target,
        Bus = d.Bus,
        Device = d.Device,
        Path = d.Path,
        Format = d.Format,
        CacheMode = d.CacheMode,
        IoMode = d.IoMode,
        Discard = d.Discard,
        Queues = d.Queues,
        IoThread = d.IoThread,
        ReadOnly = d.ReadOnly,
        BootOrder = d.BootOrder,
        DomainXmlPath = domainXmlPath,
        Uri = uri,
    };

    internal DiskAttachment ToEngine() => new()
    {
        Domain = Domain,
        Target = Target,
        Bus = Bus,
        Device = Device,
        Path = Path,
        Format = Format,
        CacheMode = CacheMode,
        IoMode = IoMode,
        Discard = Discard,
        Queues = Queues,
        IoThread = IoThread,
        ReadOnly = ReadOnly,
        BootOrder = BootOrder,
    };
}
