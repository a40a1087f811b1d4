// A new disk attachment written out for the two places VMs are configured: libvirt domain XML (formatdomain "Hard
// drives, floppy disks, CDROMs" and "Controllers": a virtio-scsi disk needs a controller of model virtio-scsi, not
// the lsilogic libvirt adds by default) and QEMU's command line (qemu-system "Block device options": -blockdev with
// -device, or the older -drive). Cache modes map as libvirt maps them (qemuDomainDiskCachemodeFlags):
// writeback = direct off, no-flush off, write-cache on; none = direct on; writethrough = write-cache off;
// directsync = direct on, write-cache off; unsafe = no-flush on.
using System.Text;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Libvirt;

/// <summary>Which QEMU option syntax to write.</summary>
public enum QemuArgumentStyle
{
    /// <summary>-blockdev for the file and format nodes, -device for the guest device (what libvirt uses).</summary>
    BlockDev,
    /// <summary>-drive with if=none, and -device for the guest device.</summary>
    Drive,
}

/// <summary>Writes disk attachments as libvirt XML or QEMU arguments.</summary>
public static class DiskDefinitions
{
    /// <summary>
    /// The libvirt XML of <paramref name="disk"/>: a &lt;disk&gt; element, preceded for a virtio-scsi disk by the
    /// &lt;controller type='scsi' model='virtio-scsi'/&gt; it needs. Indented for a domain's &lt;devices&gt;.
    /// </summary>
    public static string LibvirtXml(DiskAttachment disk)
    {
        var xml = new StringBuilder();
        if (disk.Bus == DiskBus.VirtioScsi) xml.Append("<controller type='scsi' index='0' model='virtio-scsi'/>\n");
        bool block = disk.Path?.StartsWith("/dev/", StringComparison.Ordinal) == true;
        xml.Append($"<disk type='{(block ? "block" : "file")}' device='{disk.Device}'>\n");
        xml.Append("  <driver name='qemu'");
        Attribute(xml, "type", disk.Format);
        Attribute(xml, "cache", disk.CacheMode is { } c ? DiskAttachment.CacheName(c) : null);
        Attribute(xml, "io", disk.IoMode is { } i ? DiskAttachment.IoName(i) : null);
        Attribute(xml, "discard", disk.Discard);
        Attribute(xml, "queues", disk.Queues?.ToString());
        Attribute(xml, "iothread", disk.IoThread?.ToString());
        xml.Append("/>\n");
        if (disk.Path is not null) xml.Append($"  <source {(block ? "dev" : "file")}='{StartTag.Escape(disk.Path)}'/>\n");
        xml.Append($"  <target dev='{StartTag.Escape(disk.Target)}' bus='{BusName(disk.Bus)}'/>\n");
        if (disk.BootOrder is { } order) xml.Append($"  <boot order='{order}'/>\n");
        if (disk.ReadOnly) xml.Append("  <readonly/>\n");
        return xml.Append("</disk>").ToString();
    }

    /// <summary>
    /// QEMU arguments (one string per argument) attaching <paramref name="disks"/> with their cache modes: an iothread
    /// object per IOThread id used, one virtio-scsi controller shared by every virtio-scsi disk, then each disk.
    /// </summary>
    public static IReadOnlyList<string> QemuArguments(IReadOnlyList<DiskAttachment> disks, QemuArgumentStyle style)
    {
        var args = new List<string>();
        foreach (int thread in disks.Where(d => d.IoThread is not null).Select(d => d.IoThread!.Value).Distinct())
            args.AddRange(new[] { "-object", $"iothread,id=iothread{thread}" });
        if (disks.Any(d => d.Bus == DiskBus.VirtioScsi)) args.AddRange(new[] { "-device", "virtio-scsi-pci,id=scsi0" });
        for (int n = 0; n < disks.Count; n++)
        {
            var d = disks[n];
            var (direct, noFlush, writeCache) = CacheFlags(d.CacheMode ?? CacheMode.Writeback);
            string node = $"vdisk{n}", format = d.Format ?? "raw";
            string common = $"cache.direct={OnOff(direct)},cache.no-flush={OnOff(noFlush)}" + (d.Discard is null ? "" : $",discard={d.Discard}");
            string aio = d.IoMode is { } io ? $",aio={DiskAttachment.IoName(io)}" : "";
            string readOnly = d.ReadOnly ? ",read-only=on" : "";
            if (style == QemuArgumentStyle.BlockDev)
            {
                args.AddRange(new[] { "-blockdev", $"driver=file,filename={Value(d.Path ?? "")},node-name={node}-file,{common}{aio}{readOnly}" });
                args.AddRange(new[] { "-blockdev", $"driver={format},file={node}-file,node-name={node},{common}{readOnly}" });
            }
            else
            {
                args.AddRange(new[] { "-drive", $"file={Value(d.Path ?? "")},format={format},if=none,id={node},{common}{aio}{(d.ReadOnly ? ",readonly=on" : "")}" });
            }
            args.AddRange(new[] { "-device", Device(d, node, writeCache) });
        }
        return args;
    }

    /// <summary>The cache flags QEMU reports (query-block's cache.direct, cache.no-flush, writeback) for a mode.</summary>
    public static (bool Direct, bool NoFlush, bool WriteBack) CacheFlags(CacheMode mode) => mode switch
    {
        CacheMode.None => (true, false, true),
        CacheMode.Writethrough => (false, false, false),
        CacheMode.DirectSync => (true, false, false),
        CacheMode.Unsafe => (false, true, true),
        _ => (false, false, true),
    };

    /// <summary>libvirt's bus name for a bus (virtio, scsi, sata, ide, usb).</summary>
    public static string BusName(DiskBus bus) => bus switch
    {
        DiskBus.VirtioBlk => "virtio",
        DiskBus.VirtioScsi or DiskBus.Scsi => "scsi",
        DiskBus.Sata => "sata",
        DiskBus.Ide => "ide",
        DiskBus.Usb => "usb",
        _ => throw new ArgumentOutOfRangeException(nameof(bus), bus, "This bus has no libvirt name VDisk can write."),
    };

    private static string Device(DiskAttachment d, string node, bool writeCache)
    {
        bool cdrom = d.Device == "cdrom";
        string model = d.Bus switch
        {
            DiskBus.VirtioBlk => "virtio-blk-pci",
            DiskBus.VirtioScsi => cdrom ? "scsi-cd,bus=scsi0.0" : "scsi-hd,bus=scsi0.0",
            DiskBus.Sata or DiskBus.Ide => cdrom ? "ide-cd" : "ide-hd",
            DiskBus.Usb => "usb-storage",
            _ => throw new ArgumentOutOfRangeException(nameof(d), d.Bus, "This bus has no QEMU device VDisk can write."),
        };
        var device = new StringBuilder($"{model},drive={node},id={node}-device");
        if (!cdrom) device.Append($",write-cache={OnOff(writeCache)}");
        if (d.Queues is { } queues) device.Append($",num-queues={queues}");
        if (d.IoThread is { } thread) device.Append($",iothread=iothread{thread}");
        if (d.BootOrder is { } order) device.Append($",bootindex={order}");
        return device.ToString();
    }

    // QEMU's option syntax: a comma inside a value is written twice.
    private static string Value(string value) => value.Replace(",", ",,");

    private static string OnOff(bool value) => value ? "on" : "off";

    private static void Attribute(StringBuilder xml, string name, string? value)
    {
        if (value is not null) xml.Append($" {name}='{StartTag.Escape(value)}'");
    }
}
