// The metadata-overlap check on every host write (QEMU's qcow2_check_metadata_overlap, "cached" mode):
// the header, the active L1 table and its L2 tables, the refcount table and its blocks, the snapshot table
// the snapshots' L1 tables and the bitmap directory are known in memory; a write that would land on one of them (guest data
// steered there by a corrupt L2 entry, or a table written over another) is refused, and the owner marks
// the image corrupt instead of writing.
using VDisk.Engine.Core;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>Kinds of qcow2 metadata (QEMU's QCOW2_OL_* bits).</summary>
[Flags]
internal enum Qcow2MetadataKind
{
    None = 0,
    Header = 1,
    ActiveL1 = 2,
    ActiveL2 = 4,
    RefcountTable = 8,
    RefcountBlock = 16,
    SnapshotTable = 32,
    InactiveL1 = 64,
    BitmapDirectory = 128,
    /// <summary>New bitmap tables and directories (written to fresh clusters; not tracked as ranges).</summary>
    BitmapTable = 256,
}

/// <summary>Where the image's metadata is, and the check every write goes through. Thread-safe.</summary>
internal sealed class Qcow2OverlapGuard
{
    private readonly object _lock = new();
    private readonly Qcow2Geometry _geometry;
    private readonly string _path;
    private readonly HashSet<long> _l2Tables = new();
    private readonly HashSet<long> _refcountBlocks = new();
    private readonly Dictionary<Qcow2MetadataKind, List<(long Start, long End)>> _ranges = new();

    public Qcow2OverlapGuard(Qcow2Geometry geometry, string path)
    {
        _geometry = geometry;
        _path = path;
        SetRanges(Qcow2MetadataKind.Header, new[] { (HostOffset.None, geometry.ClusterSize) });
    }

    /// <summary>Called before refusing a write, with a description of the overlap (the owner marks the image corrupt).</summary>
    public Action<string>? OnViolation { get; set; }

    /// <summary>False for read-only images: nothing is tracked and nothing is checked.</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>Replaces the byte ranges held by metadata of <paramref name="kind"/> (not used for L2 tables and refcount blocks).</summary>
    public void SetRanges(Qcow2MetadataKind kind, IEnumerable<(HostOffset Start, long Length)> ranges)
    {
        var list = ranges.Where(r => r.Length > 0).Select(r => (r.Start.Value, r.Start.Value + r.Length)).ToList();
        lock (_lock) _ranges[kind] = list;
    }

    /// <summary>Records that the cluster holds (or no longer holds) an active L2 table.</summary>
    public void SetL2Table(HostOffset table, bool present) => SetCluster(_l2Tables, table, present);

    /// <summary>Records that the cluster holds (or no longer holds) a refcount block.</summary>
    public void SetRefcountBlock(HostOffset block, bool present) => SetCluster(_refcountBlocks, block, present);

    /// <summary>The kind of metadata the host range overlaps, ignoring <paramref name="ignore"/>; None when it is free of metadata.</summary>
    public Qcow2MetadataKind Find(HostOffset offset, long length, Qcow2MetadataKind ignore)
    {
        if (!Enabled || length <= 0) return Qcow2MetadataKind.None;
        long start = offset.Value, end = offset.Value + length;
        lock (_lock)
        {
            foreach (var (kind, list) in _ranges)
            {
                if ((kind & ignore) != 0) continue;
                foreach (var (s, e) in list)
                    if (start < e && s < end) return kind;
            }
            var (first, count) = _geometry.ClustersOf(offset, length);
            bool checkL2 = (ignore & Qcow2MetadataKind.ActiveL2) == 0 && _l2Tables.Count > 0;
            bool checkBlocks = (ignore & Qcow2MetadataKind.RefcountBlock) == 0;
            for (long c = first.Value; c < first.Value + count; c++)
            {
                if (checkL2 && _l2Tables.Contains(c)) return Qcow2MetadataKind.ActiveL2;
                if (checkBlocks && _refcountBlocks.Contains(c)) return Qcow2MetadataKind.RefcountBlock;
            }
        }
        return Qcow2MetadataKind.None;
    }

    /// <summary>Refuses a write of <paramref name="kind"/> (None for guest data) that would overwrite other metadata.</summary>
    public void CheckWrite(HostOffset offset, long length, Qcow2MetadataKind kind)
    {
        var hit = Find(offset, length, kind);
        if (hit == Qcow2MetadataKind.None) return;
        string what = kind == Qcow2MetadataKind.None ? "guest data" : Describe(kind);
        string message = $"a write of {what} to host offset 0x{offset.Value:x} ({length} bytes) would overwrite the {Describe(hit)} " +
            "(metadata overlap); the image is marked corrupt and must be repaired (Test-VDisk -Repair All, or qemu-img check -r all) before it is written again.";
        OnViolation?.Invoke(message);
        throw VDiskException.Corrupt(_path, message);
    }

    private void SetCluster(HashSet<long> set, HostOffset offset, bool present)
    {
        if (!Enabled || offset.IsNone) return;
        long cluster = _geometry.ClusterOf(offset).Value;
        lock (_lock)
        {
            if (present) set.Add(cluster);
            else set.Remove(cluster);
        }
    }

    private static string Describe(Qcow2MetadataKind kind) => kind switch
    {
        Qcow2MetadataKind.Header => "image header",
        Qcow2MetadataKind.ActiveL1 => "active L1 table",
        Qcow2MetadataKind.ActiveL2 => "an active L2 table",
        Qcow2MetadataKind.RefcountTable => "refcount table",
        Qcow2MetadataKind.RefcountBlock => "a refcount block",
        Qcow2MetadataKind.SnapshotTable => "snapshot table",
        Qcow2MetadataKind.InactiveL1 => "L1 table of an internal snapshot",
        Qcow2MetadataKind.BitmapDirectory => "bitmap directory",
        Qcow2MetadataKind.BitmapTable => "a new bitmap table or directory",
        _ => kind.ToString(),
    };
}
