// How a disk is attached to a VM, in the terms of libvirt formatdomain "Hard drives, floppy disks, CDROMs": the
// <disk> element's source, <target dev bus>, and the <driver> attributes type, cache, io, discard, queues, iothread.
using VDisk.Engine.Storage;

namespace VDisk.Engine.Libvirt;

/// <summary>The bus a disk is attached to, as the guest sees it.</summary>
public enum DiskBus
{
    /// <summary>virtio-blk (libvirt bus='virtio'): one PCI device per disk, named vdX in Linux guests.</summary>
    VirtioBlk,
    /// <summary>virtio-scsi (bus='scsi' on a controller of model virtio-scsi): many disks per controller, named sdX.</summary>
    VirtioScsi,
    /// <summary>bus='scsi' on another controller model (lsilogic, the default libvirt adds, and others).</summary>
    Scsi,
    /// <summary>bus='sata' (AHCI; the emulated disk of q35 machines).</summary>
    Sata,
    /// <summary>bus='ide' (i440fx machines only).</summary>
    Ide,
    /// <summary>bus='usb'.</summary>
    Usb,
    /// <summary>Any other bus (fdc, sd, xen ...).</summary>
    Other,
}

/// <summary>QEMU's asynchronous I/O engines (libvirt driver attribute io).</summary>
public enum DiskIoMode
{
    /// <summary>io='native': Linux AIO; needs cache none or directsync (O_DIRECT).</summary>
    Native,
    /// <summary>io='threads': a pool of worker threads, QEMU's default.</summary>
    Threads,
    /// <summary>io='io_uring': Linux io_uring.</summary>
    IoUring,
}

/// <summary>One disk of a domain, as its XML defines it.</summary>
public sealed record DiskAttachment
{
    /// <summary>The domain's name.</summary>
    public string Domain { get; init; } = string.Empty;

    /// <summary>The target device name (vda, sda ...), unique within the domain.</summary>
    public string Target { get; init; } = string.Empty;

    /// <summary>The bus the disk is attached to.</summary>
    public DiskBus Bus { get; init; }

    /// <summary>libvirt's device kind: disk, cdrom, floppy or lun.</summary>
    public string Device { get; init; } = "disk";

    /// <summary>The file or block device (or network name / volume) the disk reads; null for an empty cdrom.</summary>
    public string? Path { get; init; }

    /// <summary>The image format (driver type), or null when the XML does not say.</summary>
    public string? Format { get; init; }

    /// <summary>The cache mode, or null when not set (QEMU's default, writeback).</summary>
    public CacheMode? CacheMode { get; init; }

    /// <summary>The I/O engine, or null when not set (QEMU's default, threads).</summary>
    public DiskIoMode? IoMode { get; init; }

    /// <summary>discard='unmap' or 'ignore', or null when not set (ignore).</summary>
    public string? Discard { get; init; }

    /// <summary>virtio-blk queues, or null when not set.</summary>
    public int? Queues { get; init; }

    /// <summary>The IOThread id the disk runs in, or null.</summary>
    public int? IoThread { get; init; }

    /// <summary>True when the disk is read-only (&lt;readonly/&gt;).</summary>
    public bool ReadOnly { get; init; }

    /// <summary>The boot order (&lt;boot order='N'/&gt;), or null.</summary>
    public int? BootOrder { get; init; }

    /// <summary>The libvirt name of a cache mode (none, writethrough, writeback, directsync, unsafe).</summary>
    public static string CacheName(CacheMode mode) => mode.ToString().ToLowerInvariant();

    /// <summary>The cache mode libvirt calls <paramref name="name"/>, or null for none given or 'default'.</summary>
    public static CacheMode? ParseCache(string? name) => name switch
    {
        null or "default" => null,
        "none" => Storage.CacheMode.None,
        "writethrough" => Storage.CacheMode.Writethrough,
        "writeback" => Storage.CacheMode.Writeback,
        "directsync" => Storage.CacheMode.DirectSync,
        "unsafe" => Storage.CacheMode.Unsafe,
        _ => throw new FormatException($"unknown cache mode '{name}'"),
    };

    /// <summary>The libvirt name of an I/O mode (native, threads, io_uring).</summary>
    public static string IoName(DiskIoMode mode) => mode == DiskIoMode.IoUring ? "io_uring" : mode.ToString().ToLowerInvariant();

    /// <summary>The I/O mode libvirt calls <paramref name="name"/>, or null for none given or 'default'.</summary>
    public static DiskIoMode? ParseIo(string? name) => name switch
    {
        null or "default" => null,
        "native" => DiskIoMode.Native,
        "threads" => DiskIoMode.Threads,
        "io_uring" => DiskIoMode.IoUring,
        _ => throw new FormatException($"unknown io mode '{name}'"),
    };
}
