// Bus changes of a disk (libvirt formatdomain "Hard drives, floppy disks, CDROMs" target/address, "Controllers"
// virtio-scsi driver queues/iothread, "Device Addresses" type='drive'): virtio-blk, virtio-scsi, sata and ide. The
// disk gets a free target name for its new bus (vdX, sdX, hdX), a drive address on a free unit of its controller
// (or no address: libvirt gives a virtio-blk disk a PCI slot, an ide disk the address its name implies), and a
// virtio-scsi disk goes on the domain's first virtio-scsi controller or on one added for it (never lsilogic, the
// model libvirt adds when none is written). Only the changed tags are rewritten; <boot order> and all else stay.
using System.Xml.Linq;
using VDisk.Engine.Core;

namespace VDisk.Engine.Libvirt;

public sealed partial class DomainXml
{
    /// <summary>
    /// The document with disk <paramref name="target"/> moved to <paramref name="bus"/> (VirtioBlk, VirtioScsi, Sata or
    /// Ide); <paramref name="newTarget"/> is its target name afterwards. <paramref name="queues"/> and
    /// <paramref name="ioThread"/> go on the disk's driver for virtio-blk and on the controller's driver for
    /// virtio-scsi; on other buses they are written to the disk so that <see cref="DomainRules"/> names the rule broken.
    /// A controller iothread the domain does not define is a DomainRuleViolated error (IoThreadNotDefined).
    /// </summary>
    public DomainXml WithBus(string target, DiskBus bus, int? queues, int? ioThread, out string newTarget)
    {
        if (bus is not (DiskBus.VirtioBlk or DiskBus.VirtioScsi or DiskBus.Sata or DiskBus.Ide))
            throw new VDiskException(VDiskErrorKind.InvalidArgument, Source, $"Bus {bus} is not one a disk can be moved to (VirtioBlk, VirtioScsi, Sata, Ide).");
        var disk = FindDisk(target);
        var current = Disk(target);
        var edits = new List<(int Start, int End, string Text)>();
        var devices = Root.Element("devices")!;
        var others = devices.Elements("disk").Where(d => d != disk).ToList();
        bool moves = current.Bus != bus;
        newTarget = moves ? FreeTargetName(bus, target, others) : target;

        // The disk's driver: virtio-blk takes queues/iothread; other buses lose them (or get them, to be refused).
        var driverChanges = new Dictionary<string, string?>();
        bool diskHoldsOptions = bus != DiskBus.VirtioScsi;
        if (moves && current.Bus == DiskBus.VirtioBlk) { driverChanges["queues"] = null; driverChanges["iothread"] = null; }
        if (diskHoldsOptions && queues is { } q) driverChanges["queues"] = q.ToString();
        if (diskHoldsOptions && ioThread is { } t) driverChanges["iothread"] = t.ToString();
        if (driverChanges.Count > 0 && disk.Element("driver") is { } driver)
        {
            var tag = StartTag.Read(Text, Offset(driver));
            edits.Add((tag.Start, tag.End, tag.Rewrite(Text, driverChanges)));
        }
        else if (driverChanges.Any(c => c.Value is not null))
        {
            var diskTag = StartTag.Read(Text, Offset(disk));
            var values = driverChanges.Where(c => c.Value is not null).Select(c => $" {c.Key}='{c.Value}'");
            edits.Add((diskTag.End, diskTag.End, ChildIndent(disk) + "<driver name='qemu'" + string.Concat(values) + "/>"));
        }

        if (moves)
        {
            var targetTag = StartTag.Read(Text, Offset(disk.Element("target")!));
            edits.Add((targetTag.Start, targetTag.End, targetTag.Rewrite(Text, new Dictionary<string, string?>
            {
                ["dev"] = newTarget,
                ["bus"] = bus switch { DiskBus.VirtioBlk => "virtio", DiskBus.VirtioScsi => "scsi", DiskBus.Sata => "sata", _ => "ide" },
            })));
        }

        string? address = null;
        if (bus == DiskBus.VirtioScsi)
        {
            var controller = devices.Elements("controller").FirstOrDefault(c => (string?)c.Attribute("type") == "scsi" && (string?)c.Attribute("model") == "virtio-scsi");
            int index;
            if (ioThread is { } thread && !IoThreadIds.Contains(thread))
                throw new VDiskException(VDiskErrorKind.DomainRuleViolated, Source,
                    $"{Source ?? Name}: libvirt's QEMU driver would refuse this: [{DomainRule.IoThreadNotDefined}] the virtio-scsi controller's iothread {thread} is not defined by the domain (it defines {(IoThreadIds.Count == 0 ? "none" : string.Join(", ", IoThreadIds))}); add it to <iothreadids> or <iothreads>.");
            var options = new Dictionary<string, string?>();
            if (queues is { } cq) options["queues"] = cq.ToString();
            if (ioThread is { } ct) options["iothread"] = ct.ToString();
            if (controller is not null)
            {
                index = int.Parse((string?)controller.Attribute("index") ?? "0");
                if (options.Count > 0) edits.Add(SetChildDriver(controller, options));
            }
            else
            {
                index = NewScsiControllerIndex(devices);
                edits.Add(AddController(devices, index, options));
            }
            if (moves || (string?)disk.Element("address")?.Attribute("controller") != index.ToString())
                address = $"<address type='drive' controller='{index}' bus='0' target='0' unit='{FreeUnit(others, "scsi", index)}'/>";
        }
        else if (bus == DiskBus.Sata && moves)
        {
            var sata = devices.Elements("controller").FirstOrDefault(c => (string?)c.Attribute("type") == "sata");
            int index = int.Parse((string?)sata?.Attribute("index") ?? "0");
            address = $"<address type='drive' controller='{index}' bus='0' target='0' unit='{FreeUnit(others, "sata", index)}'/>";
        }

        if (moves || address is not null)
        {
            var old = disk.Element("address");
            if (old is not null)
            {
                var tag = StartTag.Read(Text, Offset(old));
                if (address is not null) edits.Add((tag.Start, tag.End, address));
                else edits.Add((LineStartOf(tag.Start), tag.End, string.Empty));
            }
            else if (address is not null)
            {
                var last = disk.Elements().Last();
                int end = ElementEnd(last);
                edits.Add((end, end, ChildIndent(disk) + address));
            }
        }

        string text = Text;
        foreach (var edit in edits.OrderByDescending(e => e.Start))
            text = string.Concat(text.AsSpan(0, edit.Start), edit.Text, text.AsSpan(edit.End));
        return new DomainXml(text, Source);
    }

    // The disk's own name when it is already of the bus's family (sata <-> scsi), else the first free name of the
    // family: vdX for virtio-blk, sdX for scsi and sata (one namespace), hdX for ide.
    private static string FreeTargetName(DiskBus bus, string current, IEnumerable<XElement> others)
    {
        string prefix = bus switch { DiskBus.VirtioBlk => "vd", DiskBus.Ide => "hd", _ => "sd" };
        var used = others.Select(d => (string?)d.Element("target")?.Attribute("dev")).ToHashSet();
        if (current.StartsWith(prefix, StringComparison.Ordinal) && current.Length > 2 && current[2..].All(char.IsAsciiLetterLower) && !used.Contains(current))
            return current;
        for (int i = 0; ; i++)
        {
            string name = prefix + DiskLetters(i);
            if (!used.Contains(name)) return name;
        }
    }

    // a..z, aa..zz, ... as libvirt's virIndexToDiskName.
    private static string DiskLetters(int index)
    {
        string letters = string.Empty;
        for (int i = index; i >= 0; i = i / 26 - 1) letters = (char)('a' + i % 26) + letters;
        return letters;
    }

    // The lowest unit on controller `index` of bus `busName` no other disk holds (a disk without an address counts
    // at the unit libvirt derives from its name).
    private static int FreeUnit(IEnumerable<XElement> others, string busName, int index)
    {
        var used = new HashSet<int>();
        foreach (var d in others.Where(d => (string?)d.Element("target")?.Attribute("bus") == busName))
        {
            var a = d.Element("address");
            if (a is not null && (string?)a.Attribute("type") == "drive")
            {
                if (((string?)a.Attribute("controller") ?? "0") == index.ToString() && int.TryParse((string?)a.Attribute("unit") ?? "0", out int unit)) used.Add(unit);
            }
            else if ((string?)d.Element("target")?.Attribute("dev") is { Length: > 2 } dev && index == 0)
            {
                int n = 0;
                foreach (char c in dev[2..]) n = n * 26 + (c - 'a' + 1);
                used.Add(n - 1);
            }
        }
        int free = 0;
        while (used.Contains(free)) free++;
        return free;
    }

    // One past the highest SCSI controller index written or referenced by a disk address (0 when there is none).
    private static int NewScsiControllerIndex(XElement devices)
    {
        var indices = devices.Elements("controller").Where(c => (string?)c.Attribute("type") == "scsi").Select(c => int.Parse((string?)c.Attribute("index") ?? "0"))
            .Concat(devices.Elements("disk").Where(d => (string?)d.Element("target")?.Attribute("bus") == "scsi")
                .Select(d => int.Parse((string?)d.Element("address")?.Attribute("controller") ?? "0"))).ToList();
        return indices.Count == 0 ? 0 : indices.Max() + 1;
    }

    // A new <controller type='scsi' model='virtio-scsi'>, after the last controller (or the last disk).
    private (int, int, string) AddController(XElement devices, int index, Dictionary<string, string?> options)
    {
        var after = devices.Elements("controller").LastOrDefault() ?? devices.Elements("disk").Last();
        string indent = ChildIndent(devices);
        string element = $"<controller type='scsi' index='{index}' model='virtio-scsi'";
        element += options.Count == 0 ? "/>"
            : ">" + indent + "  <driver" + string.Concat(options.Select(o => $" {o.Key}='{o.Value}'")) + "/>" + indent + "</controller>";
        int end = ElementEnd(after);
        return (end, end, indent + element);
    }

    // Sets attributes on an element's <driver> child, adding the child (and turning <x/> into <x>...</x>) if needed.
    private (int, int, string) SetChildDriver(XElement element, Dictionary<string, string?> options)
    {
        if (element.Element("driver") is { } driver)
        {
            var tag = StartTag.Read(Text, Offset(driver));
            return (tag.Start, tag.End, tag.Rewrite(Text, options));
        }
        var own = StartTag.Read(Text, Offset(element));
        string driverText = "<driver" + string.Concat(options.Select(o => $" {o.Key}='{o.Value}'")) + "/>";
        if (Text[own.End - 2] == '/')
        {
            string indent = LeadingIndent(element);
            string open = Text[own.Start..(own.End - 2)].TrimEnd() + ">";
            return (own.Start, own.End, open + indent + "  " + driverText + indent + $"</{element.Name}>");
        }
        return (own.End, own.End, ChildIndent(element) + driverText);
    }

    // The whitespace (with its line break) before an element's first child, else its own indent plus two spaces.
    private string ChildIndent(XElement element) =>
        element.Nodes().OfType<XText>().FirstOrDefault()?.Value is { } space && string.IsNullOrWhiteSpace(space) ? space : LeadingIndent(element) + "  ";

    private string LeadingIndent(XElement element) =>
        element.PreviousNode is XText { Value: var space } && string.IsNullOrWhiteSpace(space) ? space[space.LastIndexOfAny(new[] { '\n', '\r' })..] : "\n";

    // Offset just past an element (its end tag, or the start tag when it is empty and self-closed).
    private int ElementEnd(XElement element)
    {
        var tag = StartTag.Read(Text, Offset(element));
        if (Text[tag.End - 2] == '/') return tag.End;
        string close = $"</{element.Name}";
        int depth = 0, i = tag.End;
        while (true)
        {
            int next = Text.IndexOf('<', i);
            if (Text.AsSpan(next).StartsWith(close) && depth == 0) return Text.IndexOf('>', next) + 1;
            if (Text.AsSpan(next).StartsWith($"<{element.Name}") && Text[next + 1 + element.Name.LocalName.Length] is ' ' or '>' or '/' or '\t' or '\n' or '\r')
            {
                if (Text[StartTag.Read(Text, next).End - 2] != '/') depth++;
            }
            else if (Text.AsSpan(next).StartsWith(close)) depth--;
            i = next + 1;
        }
    }

    // The start of the whitespace before `offset` on its line break (so removing an element removes its line).
    private int LineStartOf(int offset)
    {
        int i = offset;
        while (i > 0 && Text[i - 1] is ' ' or '\t') i--;
        if (i > 0 && Text[i - 1] == '\n') i--;
        if (i > 0 && Text[i - 1] == '\r') i--;
        return i;
    }
}
