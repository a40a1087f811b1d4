// The VMDK text descriptor (VMware Virtual Disk Format 1.1, "The Descriptor File": header, extent
// descriptions, disk database). Parsed leniently like QEMU's block/vmdk.c (comments and unknown keys
// kept), validated against hard limits, and written with QEMU's template and geometry.
using System.Globalization;
using System.Text;
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>One extent description line: <c>RW 4194304 SPARSE "disk-s001.vmdk"</c> or <c>RW 8 FLAT "disk-flat.vmdk" 0</c>.</summary>
/// <param name="Access">RW, RDONLY or NOACCESS.</param>
/// <param name="Sectors">Extent size in sectors.</param>
/// <param name="Type">FLAT, SPARSE, VMFS, VMFSSPARSE, SESPARSE, ZERO, ...</param>
/// <param name="FileName">The file name as written (relative to the descriptor's folder unless rooted).</param>
/// <param name="FlatOffset">Sector offset of the data inside a flat extent file.</param>
/// <param name="LineNumber">1-based line number, for error messages.</param>
internal sealed record VmdkExtentLine(string Access, long Sectors, string Type, string? FileName, long FlatOffset, int LineNumber)
{
    /// <summary>The line as the descriptor stores it.</summary>
    public override string ToString() => Type is "FLAT" or "VMFS"
        ? $"{Access} {Sectors} {Type} \"{FileName}\" {FlatOffset}"
        : $"{Access} {Sectors} {Type} \"{FileName}\"";
}

/// <summary>A parsed descriptor: header keys, extents and the disk database, with the original text kept.</summary>
internal sealed class VmdkDescriptor
{
    /// <summary>Largest descriptor read (QEMU reads at most 1 MiB - 1).</summary>
    public const int MaxBytes = (1 << 20) - 1;
    /// <summary>Most extents accepted (8192 two-GiB extents make a 16 TiB disk).</summary>
    public const int MaxExtents = 8192;
    /// <summary>Largest virtual disk accepted: 2^62 bytes.</summary>
    public const long MaxDiskSectors = 1L << 53;
    /// <summary>parentCID of a disk without a parent.</summary>
    public const uint NoParent = 0xffffffff;
    /// <summary>The first line of every descriptor.</summary>
    public const string Signature = "# Disk DescriptorFile";

    private readonly List<string> _lines;
    private readonly string _newline;
    private int _cidLine = -1;

    private VmdkDescriptor(List<string> lines, string newline)
    {
        _lines = lines;
        _newline = newline;
    }

    public int Version { get; private set; } = 1;
    public uint Cid { get; private set; }
    public uint ParentCid { get; private set; } = NoParent;
    public string? CreateType { get; private set; }
    public string? ParentFileNameHint { get; private set; }
    public List<VmdkExtentLine> Extents { get; } = new();
    /// <summary>Disk database entries (ddb.*), in file order.</summary>
    public Dictionary<string, string> Ddb { get; } = new(StringComparer.Ordinal);

    /// <summary>Parses descriptor text (stopping at the first NUL, as embedded descriptors are zero-padded).</summary>
    public static VmdkDescriptor Parse(ReadOnlySpan<byte> bytes, string path)
    {
        int nul = bytes.IndexOf((byte)0);
        if (nul >= 0) bytes = bytes[..nul];
        if (bytes.Length > MaxBytes)
            throw VDiskException.Corrupt(path, $"the VMDK descriptor is {bytes.Length} bytes; at most {MaxBytes} are supported.");
        var text = Encoding.UTF8.GetString(bytes);
        var d = new VmdkDescriptor(text.Split('\n').Select(l => l.TrimEnd('\r')).ToList(), text.Contains("\r\n") ? "\r\n" : "\n");
        bool sawCid = false, sawParentCid = false;
        for (int i = 0; i < d._lines.Count; i++)
        {
            string line = d._lines[i].Trim();
            if (line.Length == 0 || line[0] == '#') continue;
            if (TryParseExtent(line, i + 1, path) is { } extent)
            {
                if (d.Extents.Count == MaxExtents)
                    throw VDiskException.Corrupt(path, $"the VMDK descriptor lists more than {MaxExtents} extents.");
                d.Extents.Add(extent);
                continue;
            }
            int eq = line.IndexOf('=');
            if (eq <= 0) continue; // QEMU ignores lines it cannot read
            string key = line[..eq].Trim(), value = Unquote(line[(eq + 1)..].Trim());
            switch (key)
            {
                case "version":
                    if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int v) || v is < 1 or > 3)
                        throw VDiskException.Unsupported(path, $"VMDK descriptor version '{value}' is not supported (1 to 3 are).");
                    d.Version = v;
                    break;
                case "CID":
                    d.Cid = ParseCid(value, key, i + 1, path);
                    d._cidLine = i;
                    sawCid = true;
                    break;
                case "parentCID":
                    d.ParentCid = ParseCid(value, key, i + 1, path);
                    sawParentCid = true;
                    break;
                case "createType": d.CreateType = value; break;
                case "parentFileNameHint": d.ParentFileNameHint = value.Length == 0 ? null : value; break;
                default:
                    if (key.StartsWith("ddb.", StringComparison.Ordinal)) d.Ddb[key] = value;
                    break;
            }
        }
        if (!sawCid || !sawParentCid)
            throw VDiskException.Corrupt(path, $"the VMDK descriptor has no {(sawCid ? "parentCID" : "CID")} line.");
        long total = 0;
        foreach (var e in d.Extents)
        {
            total += e.Sectors;
            if (total > MaxDiskSectors)
                throw VDiskException.Corrupt(path, $"the VMDK descriptor's extents add up to more than {MaxDiskSectors} sectors.");
        }
        return d;
    }

    /// <summary>A random content ID, different from <paramref name="previous"/> and from <see cref="NoParent"/>.</summary>
    public static uint NewCid(uint previous)
    {
        uint cid;
        do cid = (uint)Random.Shared.NextInt64(0, uint.MaxValue);
        while (cid == previous || cid == NoParent);
        return cid;
    }

    /// <summary>The descriptor text with a new CID (the content identifier changes when the disk is written), line ends kept.</summary>
    public string WithCid(uint cid)
    {
        Cid = cid;
        if (_cidLine >= 0) _lines[_cidLine] = $"CID={cid:x8}";
        return string.Join(_newline, _lines);
    }

    /// <summary>
    /// Changes the last extent line to <paramref name="sectors"/> sectors and ddb.geometry.cylinders (when present) to
    /// <paramref name="cylinders"/>, in place, keeping every other line; returns the new text.
    /// </summary>
    public string WithLastExtentSectors(long sectors, long cylinders)
    {
        var last = Extents[^1] with { Sectors = sectors };
        Extents[^1] = last;
        _lines[last.LineNumber - 1] = last.ToString();
        int geometry = _lines.FindIndex(l => l.TrimStart().StartsWith("ddb.geometry.cylinders", StringComparison.Ordinal));
        if (geometry >= 0) _lines[geometry] = string.Create(CultureInfo.InvariantCulture, $"ddb.geometry.cylinders = \"{cylinders}\"");
        return string.Join(_newline, _lines);
    }

    /// <summary>
    /// A new descriptor with QEMU's template: header, one extent line each, and the disk database with
    /// geometry from <see cref="Geometry"/> for an IDE adapter.
    /// </summary>
    public static string Build(string createType, uint cid, uint parentCid, string? parentFileNameHint,
        IEnumerable<VmdkExtentLine> extents, long diskBytes)
    {
        var (cylinders, heads, sectors) = Geometry(diskBytes, "ide");
        var sb = new StringBuilder();
        sb.Append(Signature).Append('\n');
        sb.Append("version=1\n");
        sb.Append(CultureInfo.InvariantCulture, $"CID={cid:x8}\n");
        sb.Append(CultureInfo.InvariantCulture, $"parentCID={parentCid:x8}\n");
        sb.Append(CultureInfo.InvariantCulture, $"createType=\"{createType}\"\n");
        if (parentFileNameHint != null) sb.Append(CultureInfo.InvariantCulture, $"parentFileNameHint=\"{parentFileNameHint}\"\n");
        sb.Append("\n# Extent description\n");
        foreach (var e in extents) sb.Append(e).Append('\n');
        sb.Append("\n# The Disk Data Base\n#DDB\n\n");
        sb.Append("ddb.virtualHWVersion = \"4\"\n");
        sb.Append(CultureInfo.InvariantCulture, $"ddb.geometry.cylinders = \"{cylinders}\"\n");
        sb.Append(CultureInfo.InvariantCulture, $"ddb.geometry.heads = \"{heads}\"\n");
        sb.Append(CultureInfo.InvariantCulture, $"ddb.geometry.sectors = \"{sectors}\"\n");
        sb.Append("ddb.adapterType = \"ide\"\n");
        sb.Append("ddb.toolsVersion = \"2147483647\"\n");
        return sb.ToString();
    }

    /// <summary>CHS geometry as QEMU computes it: 63 sectors, 16 heads for IDE (255 otherwise), cylinders = size / (63 * heads * 512).</summary>
    public static (long Cylinders, int Heads, int Sectors) Geometry(long diskBytes, string adapterType)
    {
        int heads = adapterType == "ide" ? 16 : 255;
        return (diskBytes / (63L * heads * VmdkSparseHeader.SectorSize), heads, 63);
    }

    // RW|RDONLY|NOACCESS <sectors> <type> ["file name" [offset]]
    private static VmdkExtentLine? TryParseExtent(string line, int lineNumber, string path)
    {
        var head = line.Split((char[]?)null, 4, StringSplitOptions.RemoveEmptyEntries);
        if (head.Length < 3 || head[0] is not ("RW" or "RDONLY" or "NOACCESS")) return null;
        string Bad(string why) => $"VMDK descriptor line {lineNumber} ('{line}') is not a valid extent description: {why}.";
        if (!long.TryParse(head[1], NumberStyles.None, CultureInfo.InvariantCulture, out long sectors) || sectors <= 0 || sectors > MaxDiskSectors)
            throw VDiskException.Corrupt(path, Bad($"the size '{head[1]}' must be 1 to {MaxDiskSectors} sectors"));
        string type = head[2];
        string rest = head.Length > 3 ? head[3].Trim() : "";
        if (rest.Length == 0) return new VmdkExtentLine(head[0], sectors, type, null, 0, lineNumber);
        int close = rest[0] == '"' ? rest.IndexOf('"', 1) : -1;
        if (close < 0)
            throw VDiskException.Corrupt(path, Bad("the file name must be in double quotes"));
        string name = rest[1..close];
        string after = rest[(close + 1)..].Trim();
        long offset = 0;
        if (after.Length > 0 && (!long.TryParse(after, NumberStyles.None, CultureInfo.InvariantCulture, out offset) || offset > MaxDiskSectors))
            throw VDiskException.Corrupt(path, Bad($"the offset '{after}' is not a sector number"));
        if (type == "FLAT" && after.Length == 0)
            throw VDiskException.Corrupt(path, Bad("a FLAT extent needs an offset"));
        if (name.Length == 0 || name.Contains('\0'))
            throw VDiskException.Corrupt(path, Bad("the file name is empty"));
        return new VmdkExtentLine(head[0], sectors, type, name, offset, lineNumber);
    }

    private static uint ParseCid(string value, string key, int lineNumber, string path)
    {
        if (value.Length is 0 or > 8 || !uint.TryParse(value, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out uint cid))
            throw VDiskException.Corrupt(path, $"VMDK descriptor line {lineNumber}: {key} '{value}' is not a 32-bit hexadecimal number.");
        return cid;
    }

    private static string Unquote(string value)
        => value.Length >= 2 && value[0] == '"' && value[^1] == '"' ? value[1..^1] : value;
}
