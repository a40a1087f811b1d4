// A libvirt domain XML document (libvirt formatdomain: "Hard drives, floppy disks, CDROMs", "Controllers",
// "IOThreads Allocation", "Operating system booting"), read into DiskAttachment records and edited in place: an edit
// rewrites only the start tags it changes (or inserts the one element it adds), so every other byte (other devices,
// comments, unknown elements and attributes, attribute order and quoting, whitespace) stays as it was, and a
// document with nothing set comes back byte-identical.
using System.Xml;
using System.Xml.Linq;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Libvirt;

/// <summary>A domain's XML: its disks and the settings the QEMU driver's rules read, and in-place edits.</summary>
public sealed partial class DomainXml
{
    private readonly XDocument _document;
    private readonly int[] _lineStarts;

    private DomainXml(string text, string? source)
    {
        Text = text;
        Source = source;
        try
        {
            _document = XDocument.Parse(text, LoadOptions.PreserveWhitespace | LoadOptions.SetLineInfo);
        }
        catch (XmlException e)
        {
            throw new VDiskException(VDiskErrorKind.InvalidDomainXml, source, $"{source ?? "domain XML"}: not well-formed XML: {e.Message}", e);
        }
        if (_document.Root?.Name != "domain")
            throw new VDiskException(VDiskErrorKind.InvalidDomainXml, source, $"{source ?? "domain XML"}: the root element is <{_document.Root?.Name}>, not <domain>.");
        _lineStarts = LineStarts(text);
        Name = (string?)Root.Element("name") ?? string.Empty;
        Machine = (string?)Root.Element("os")?.Element("type")?.Attribute("machine");
        IoThreadIds = ReadIoThreadIds();
        Disks = Root.Element("devices")?.Elements("disk").Select(ReadDisk).ToList() ?? new List<DiskAttachment>();
    }

    /// <summary>The document's text, exactly as given or as edited.</summary>
    public string Text { get; }

    /// <summary>Where the text came from (a file path or "domain NAME"), for messages.</summary>
    public string? Source { get; }

    /// <summary>The domain's name.</summary>
    public string Name { get; }

    /// <summary>The machine type (os/type/@machine: pc, q35, pc-q35-7.2 ...), or null.</summary>
    public string? Machine { get; }

    /// <summary>True for a q35 machine, which has no IDE controller.</summary>
    public bool IsQ35 => Machine?.Contains("q35", StringComparison.Ordinal) == true;

    /// <summary>The IOThread ids the domain defines (&lt;iothreadids&gt;, else 1..&lt;iothreads&gt;).</summary>
    public IReadOnlyList<int> IoThreadIds { get; }

    /// <summary>The disks, in document order.</summary>
    public IReadOnlyList<DiskAttachment> Disks { get; }

    private XElement Root => _document.Root!;

    /// <summary>Parses a domain XML document; <paramref name="source"/> names it in errors.</summary>
    public static DomainXml Parse(string text, string? source = null) => new(text, source);

    /// <summary>
    /// The document with the disk <paramref name="target"/>'s driver attributes changed: a value sets an attribute,
    /// null removes it, attributes not named keep their values. A disk without &lt;driver&gt; gets one (name='qemu')
    /// as its first child, indented like its other children. Nothing else in the text changes.
    /// </summary>
    public DomainXml WithDriver(string target, IReadOnlyDictionary<string, string?> attributes)
    {
        var disk = FindDisk(target);
        var driver = disk.Element("driver");
        string text;
        if (driver is not null)
        {
            var tag = StartTag.Read(Text, Offset(driver));
            text = string.Concat(Text.AsSpan(0, tag.Start), tag.Rewrite(Text, attributes), Text.AsSpan(tag.End));
        }
        else
        {
            var diskTag = StartTag.Read(Text, Offset(disk));
            string indent = disk.Nodes().OfType<XText>().FirstOrDefault()?.Value is { } space && string.IsNullOrWhiteSpace(space) ? space : "\n";
            var values = new[] { new KeyValuePair<string, string?>("name", "qemu") }.Concat(attributes.Where(a => a.Value is not null));
            string element = "<driver" + string.Concat(values.Select(a => $" {a.Key}='{StartTag.Escape(a.Value!)}'")) + "/>";
            text = string.Concat(Text.AsSpan(0, diskTag.End), indent + element, Text.AsSpan(diskTag.End));
        }
        return new DomainXml(text, Source);
    }

    /// <summary>The document with the cache mode (and, when given, the I/O mode) of disk <paramref name="target"/> set.</summary>
    public DomainXml WithCache(string target, CacheMode? cache, DiskIoMode? io)
    {
        var changes = new Dictionary<string, string?>();
        if (cache is { } c) changes["cache"] = DiskAttachment.CacheName(c);
        if (io is { } i) changes["io"] = DiskAttachment.IoName(i);
        return changes.Count == 0 ? this : WithDriver(target, changes);
    }

    /// <summary>The disk <paramref name="target"/>, or a DiskNotFound error naming the targets there are.</summary>
    public DiskAttachment Disk(string target) => Disks.FirstOrDefault(d => d.Target == target) ?? throw NoDisk(target);

    /// <summary>
    /// True when disk <paramref name="target"/> is backed by a file (type='file', libvirt's default, with a source
    /// file), not a block device, network or volume source.
    /// </summary>
    public bool IsFileDisk(string target)
    {
        var disk = FindDisk(target);
        return ((string?)disk.Attribute("type") ?? "file") == "file" && disk.Element("source")?.Attribute("file") is not null;
    }

    private XElement FindDisk(string target) =>
        Root.Element("devices")?.Elements("disk").FirstOrDefault(d => (string?)d.Element("target")?.Attribute("dev") == target) ?? throw NoDisk(target);

    private VDiskException NoDisk(string target) => new(VDiskErrorKind.DiskNotFound, Source,
        $"{Source ?? Name}: domain '{Name}' has no disk with target '{target}' (it has: {(Disks.Count == 0 ? "no disks" : string.Join(", ", Disks.Select(d => d.Target)))}).");

    private DiskAttachment ReadDisk(XElement disk)
    {
        var driver = disk.Element("driver");
        var target = disk.Element("target");
        var source = disk.Element("source");
        string bus = (string?)target?.Attribute("bus") ?? string.Empty;
        try
        {
            return new DiskAttachment
            {
                Domain = Name,
                Target = (string?)target?.Attribute("dev") ?? string.Empty,
                Bus = bus switch
                {
                    "virtio" => DiskBus.VirtioBlk,
                    "scsi" => ScsiControllerModel(disk) == "virtio-scsi" ? DiskBus.VirtioScsi : DiskBus.Scsi,
                    "sata" => DiskBus.Sata,
                    "ide" => DiskBus.Ide,
                    "usb" => DiskBus.Usb,
                    _ => DiskBus.Other,
                },
                Device = (string?)disk.Attribute("device") ?? "disk",
                Path = (string?)source?.Attribute("file") ?? (string?)source?.Attribute("dev") ?? (string?)source?.Attribute("name") ?? (string?)source?.Attribute("volume"),
                Format = (string?)driver?.Attribute("type"),
                CacheMode = DiskAttachment.ParseCache((string?)driver?.Attribute("cache")),
                IoMode = DiskAttachment.ParseIo((string?)driver?.Attribute("io")),
                Discard = (string?)driver?.Attribute("discard"),
                Queues = (int?)driver?.Attribute("queues"),
                IoThread = (int?)driver?.Attribute("iothread"),
                ReadOnly = disk.Element("readonly") is not null,
                BootOrder = (int?)disk.Element("boot")?.Attribute("order"),
            };
        }
        catch (FormatException e)
        {
            throw new VDiskException(VDiskErrorKind.InvalidDomainXml, Source, $"{Source ?? Name}: disk '{(string?)target?.Attribute("dev")}': {e.Message}.", e);
        }
    }

    // The model of the SCSI controller a bus='scsi' disk sits on (address controller='N', index N; 0 when not given).
    // A disk whose controller is not written out gets one added by libvirt: lsilogic.
    private string ScsiControllerModel(XElement disk)
    {
        string index = (string?)disk.Element("address")?.Attribute("controller") ?? "0";
        var controller = Root.Element("devices")?.Elements("controller")
            .FirstOrDefault(c => (string?)c.Attribute("type") == "scsi" && ((string?)c.Attribute("index") ?? "0") == index);
        return (string?)controller?.Attribute("model") ?? "lsilogic";
    }

    private List<int> ReadIoThreadIds()
    {
        try
        {
            var ids = Root.Element("iothreadids")?.Elements("iothread").Select(t => (int)t.Attribute("id")!).ToList();
            if (ids is { Count: > 0 }) return ids;
            int count = (int?)Root.Element("iothreads") ?? 0;
            return Enumerable.Range(1, count).ToList();
        }
        catch (Exception e) when (e is FormatException or ArgumentNullException)
        {
            throw new VDiskException(VDiskErrorKind.InvalidDomainXml, Source, $"{Source ?? Name}: <iothreads>/<iothreadids> hold an id that is not a number.", e);
        }
    }

    // The offset of an element's '<' in Text, from the line and column the parser recorded (1-based, at the name).
    private int Offset(XElement element)
    {
        var info = (IXmlLineInfo)element;
        int offset = _lineStarts[info.LineNumber - 1] + info.LinePosition - 2;
        if (offset < 0 || offset >= Text.Length || Text[offset] != '<')
            throw new InvalidOperationException($"Line {info.LineNumber}, column {info.LinePosition} is not the start of <{element.Name}>.");
        return offset;
    }

    // Offsets where each line starts, with line breaks as XML counts them (\r\n, \r, \n).
    private static int[] LineStarts(string text)
    {
        var starts = new List<int> { 0 };
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] == '\r' && i + 1 < text.Length && text[i + 1] == '\n') i++;
            if (text[i] is '\n' or '\r') starts.Add(i + 1);
        }
        return starts.ToArray();
    }
}
