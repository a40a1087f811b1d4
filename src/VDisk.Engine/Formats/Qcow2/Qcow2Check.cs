// Consistency check of a qcow2 image (qcow2.rst "Host cluster management", "Cluster mapping"; what qemu-img check
// reports, as QEMU's qcow2-refcount.c counts it): every reference the walker finds is counted per host cluster and
// compared with the stored refcounts. Fewer stored than referenced is a corruption (the cluster could be handed out
// twice), more is a leak (space lost, data safe); an active entry's COPIED flag must say whether the stored refcount
// is exactly 1. References past the end of the file, misaligned offsets, reserved bits and refcount blocks outside
// the file are corruptions too. Besides the counts it reports what qemu-img check --output=json does: the image end
// offset, the virtual size in clusters, and allocated, fragmented and compressed clusters of the active L1 table.
// It also decides what a repair could safely fix (Qcow2Repair): only counts and COPIED flags, never references; an
// image whose references themselves are broken (past the end, misaligned, overlapping metadata) is not repairable.
using System.Buffers.Binary;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>What a check found, in qemu-img check's terms.</summary>
internal sealed record Qcow2CheckReport
{
    /// <summary>The first problems found, in words (at most 50).</summary>
    public IReadOnlyList<string> Problems { get; init; } = Array.Empty<string>();
    /// <summary>Problems that could lose data (qemu-img check's "corruptions").</summary>
    public long Corruptions { get; init; }
    /// <summary>Clusters whose refcount is higher than their references (qemu-img check's "leaks").</summary>
    public long Leaks { get; init; }
    /// <summary>Structures that could not be checked at all (qemu-img check's "check-errors").</summary>
    public long CheckErrors { get; init; }
    /// <summary>One past the last host byte in use (qemu-img check's "image-end-offset").</summary>
    public long ImageEndOffset { get; init; }
    /// <summary>The virtual size in clusters.</summary>
    public long TotalClusters { get; init; }
    /// <summary>Guest clusters with data of their own in the active state (normal, preallocated zero, compressed).</summary>
    public long AllocatedClusters { get; init; }
    /// <summary>Allocated guest clusters not stored right after the previous one of the same L2 table (compressed always count).</summary>
    public long FragmentedClusters { get; init; }
    /// <summary>Compressed guest clusters in the active state.</summary>
    public long CompressedClusters { get; init; }
    /// <summary>The dirty bit is set (lazy refcounts, or an operation cut short): counts may lag until repaired.</summary>
    public bool Dirty { get; init; }
    /// <summary>The corrupt bit is set.</summary>
    public bool MarkedCorrupt { get; init; }
    /// <summary>Why a repair would not be safe (empty when every finding is a count or a COPIED flag).</summary>
    public IReadOnlyList<string> Unrepairable { get; init; } = Array.Empty<string>();

    /// <summary>No corruption, leak or check error.</summary>
    public bool IsClean => Corruptions == 0 && Leaks == 0 && CheckErrors == 0;
}

/// <summary>Checks a closed qcow2 image.</summary>
internal static class Qcow2Check
{
    private const int MaxReported = 50;

    /// <summary>Checks the image in <paramref name="storage"/> (read only).</summary>
    public static Qcow2CheckReport Run(IStorage storage) => Analyze(storage).Report;

    /// <summary>
    /// Checks the image and keeps the per-cluster reference counts a repair needs. <paramref name="accept"/> sees the
    /// header first and may refuse the image (features the engine cannot walk); <paramref name="cancel"/> stops the check.
    /// </summary>
    internal static Qcow2CheckAnalysis Analyze(IStorage storage, CancellationToken cancel = default, Action<Qcow2Header>? accept = null)
    {
        var cluster0 = new byte[2 << 20];
        storage.ReadAt(0, cluster0);
        var header = Qcow2Header.Parse(cluster0, storage.Name);
        accept?.Invoke(header);
        return new Counter(storage, header, cancel).Run();
    }

    // One check: the counting pass over every reference, then the comparison with the stored counts.
    private sealed class Counter
    {
        private readonly IStorage _storage;
        private readonly Qcow2Header _header;
        private readonly Qcow2Geometry _g;
        private readonly long _fileLength, _fileClusters, _max;
        private readonly ushort[] _referenced;
        private readonly byte[] _role;
        private readonly List<string> _problems = new(), _unrepairable = new();
        private readonly List<Qcow2Reference> _blocks = new();
        private readonly Qcow2StoredRefcounts _stored;
        private readonly CancellationToken _cancel;
        private long _corruptions, _checkErrors, _allocated, _fragmented, _compressed, _nextContiguous, _counted;

        public Counter(IStorage storage, Qcow2Header header, CancellationToken cancel)
        {
            _cancel = cancel;
            _storage = storage;
            _header = header;
            _g = new Qcow2Geometry(header.ClusterBits);
            _fileLength = storage.Length;
            _fileClusters = (_fileLength + _g.ClusterSize - 1) >> _g.ClusterBits;
            _referenced = new ushort[_fileClusters + 1]; // a range may end less than a cluster past the end, as in QEMU
            _role = new byte[_referenced.Length];
            _max = Math.Min(header.RefcountBits == 64 ? long.MaxValue : (1L << header.RefcountBits) - 1, ushort.MaxValue);
            _counted = _fileClusters;
            _stored = new Qcow2StoredRefcounts(storage, header);
        }

        public Qcow2CheckAnalysis Run()
        {
            Qcow2ReferenceWalker.Walk(_storage, _header, Visit, message => Corruption(message, message));
            foreach (var block in _blocks) CountBlock(block); // last, as QEMU does: each must then have exactly one reference

            var stored = _stored;
            long leaks = 0, highest = -1;
            var mismatched = new List<(long Cluster, long Stored)>();
            for (long c = 0; c < _counted; c++)
            {
                long have = stored.Get(c);
                if (have < 0)
                {
                    CheckError($"the refcount of cluster {c} cannot be read: its refcount table entry is misaligned");
                    continue;
                }
                if (have > 0 || _referenced[c] > 0) highest = c;
                if (have == _referenced[c]) continue;
                mismatched.Add((c, have));
                if (have > _referenced[c])
                {
                    leaks++;
                    continue;
                }
                Corruption($"cluster {c} has refcount {have} but {_referenced[c]} reference(s)", null);
                if (have == 0 && !stored.IsCovered(c))
                    Unrepairable($"cluster {c} is referenced but no refcount block covers it; the refcount structure must be rebuilt");
            }
            var report = new Qcow2CheckReport
            {
                Problems = _problems, Corruptions = _corruptions, Leaks = leaks, CheckErrors = _checkErrors,
                ImageEndOffset = (highest + 1) << _g.ClusterBits,
                TotalClusters = (_header.Size + _g.ClusterSize - 1) >> _g.ClusterBits,
                AllocatedClusters = _allocated, FragmentedClusters = _fragmented, CompressedClusters = _compressed,
                Dirty = _header.IsDirty, MarkedCorrupt = _header.IsCorrupt, Unrepairable = _unrepairable,
            };
            return new Qcow2CheckAnalysis(report, _header, _referenced, mismatched);
        }

        private void Visit(Qcow2Reference r)
        {
            _cancel.ThrowIfCancellationRequested();
            switch (r.Kind)
            {
                case Qcow2ReferenceKind.RefcountBlock:
                    _blocks.Add(r);
                    return;
                case Qcow2ReferenceKind.ActiveL2 or Qcow2ReferenceKind.SnapshotL2:
                    if (r.Kind == Qcow2ReferenceKind.ActiveL2) _nextContiguous = 0;
                    if ((r.Entry & Qcow2Entries.L1ReservedMask) != 0)
                        Corruption($"L1 entry {r.Index} has reserved bits set: 0x{r.Entry:x16}", "an L1 entry has reserved bits set");
                    Count(r);
                    if (!_g.IsAligned(r.Offset))
                        Corruption($"L1 entry {r.Index} points to an L2 table at unaligned offset 0x{r.Offset.Value:x}", "an L2 table offset is misaligned");
                    if (r.Kind == Qcow2ReferenceKind.ActiveL2 && !r.Offset.IsNone) CheckCopied(r, $"L1 entry {r.Index} (L2 table at 0x{r.Offset.Value:x})");
                    return;
                case Qcow2ReferenceKind.Data or Qcow2ReferenceKind.SnapshotData:
                    if ((r.Entry & Qcow2Entries.L2ReservedMask) != 0)
                        Corruption($"the L2 entry of guest cluster {r.Index} has reserved bits set: 0x{r.Entry:x16}", "an L2 entry has reserved bits set");
                    if (!_g.IsAligned(r.Offset))
                        Corruption($"the L2 entry of guest cluster {r.Index} points to unaligned offset 0x{r.Offset.Value:x}", "a data cluster offset is misaligned");
                    if (r.Kind == Qcow2ReferenceKind.Data)
                    {
                        _allocated++;
                        if (_nextContiguous != 0 && r.Offset.Value != _nextContiguous) _fragmented++;
                        _nextContiguous = r.Offset.Value + _g.ClusterSize;
                    }
                    Count(r);
                    if (r.Kind == Qcow2ReferenceKind.Data) CheckCopied(r, $"the L2 entry of guest cluster {r.Index}");
                    return;
                case Qcow2ReferenceKind.Compressed or Qcow2ReferenceKind.SnapshotCompressed:
                    if ((r.Entry & Qcow2Entries.Copied) != 0)
                        Corruption($"the compressed L2 entry of guest cluster {r.Index} has the COPIED flag, which compressed clusters never have",
                            "a compressed cluster descriptor has the COPIED flag");
                    Count(r);
                    if (r.Kind == Qcow2ReferenceKind.Compressed)
                    {
                        _allocated++;
                        _compressed++;
                        _fragmented++; // compressed clusters are fragmented by nature, as QEMU counts them
                    }
                    return;
                default:
                    Count(r);
                    return;
            }
        }

        // QEMU's check_refblocks: a block must lie in the file and be referenced exactly once (by its table entry).
        private void CountBlock(Qcow2Reference r)
        {
            if ((r.Entry & 0x1ff) != 0)
            {
                Corruption($"refcount table entry {r.Index} has reserved bits set: 0x{r.Entry:x16}", "a refcount table entry has reserved bits set");
                return;
            }
            long cluster = _g.ClusterOf(r.Offset).Value;
            if (cluster >= _fileClusters)
            {
                Corruption($"refcount block {r.Index} at 0x{r.Offset.Value:x} lies outside the file", "a refcount block lies outside the file");
                return;
            }
            Count(r);
            if (_referenced[cluster] != 1)
                Corruption($"refcount block {r.Index} at 0x{r.Offset.Value:x} has {_referenced[cluster]} references", "a refcount block overlaps other metadata");
        }

        // QEMU's qcow2_inc_refcounts_imrt: a range reaching a cluster or more past the end of the file is a corruption
        // and not counted; each cluster's count saturates at the largest refcount the image can store.
        private void Count(Qcow2Reference r)
        {
            if (r.Length <= 0) return; // nothing to count, as in QEMU
            if (r.Offset.Value < 0 || r.Offset.Value + r.Length - _fileLength >= _g.ClusterSize)
            {
                Corruption($"{Describe(r)} at 0x{r.Offset.Value:x} ({r.Length} bytes) lies beyond the end of the file", $"{Describe(r)} lies beyond the end of the file");
                return;
            }
            byte role = RoleOf(r.Kind);
            var (first, count) = _g.ClustersOf(r.Offset, r.Length);
            for (long c = first.Value; c < first.Value + count; c++)
            {
                if (_role[c] != 0 && (_role[c] != role || role == MetadataRole))
                    Unrepairable($"cluster {c} is used as {RoleName(_role[c])} and as {Describe(r)} (overlapping metadata)");
                _role[c] = role;
                if (_referenced[c] >= _max)
                {
                    Corruption($"cluster {c} has more references than a {_header.RefcountBits}-bit refcount can count", "a refcount would overflow");
                    continue;
                }
                _referenced[c]++;
                _counted = Math.Max(_counted, c + 1);
            }
        }

        // QEMU's check_oflag_copied, made while walking: an active L1 or L2 entry's COPIED flag must say "stored refcount is 1".
        private void CheckCopied(Qcow2Reference r, string what)
        {
            long refcount = _stored.Get(_g.ClusterOf(r.Offset).Value);
            bool copied = (r.Entry & Qcow2Entries.Copied) != 0;
            if (refcount >= 0 && (refcount == 1) != copied)
                Corruption($"{what} has the COPIED flag {(copied ? "set" : "clear")} but refcount {refcount}", null);
        }

        private void Corruption(string message, string? unrepairable)
        {
            _corruptions++;
            if (_problems.Count < MaxReported) _problems.Add(message);
            if (unrepairable != null) Unrepairable(unrepairable);
        }

        private void CheckError(string message)
        {
            _checkErrors++;
            if (_problems.Count < MaxReported) _problems.Add(message);
            Unrepairable(message);
        }

        private void Unrepairable(string reason)
        {
            if (_unrepairable.Count < MaxReported && !_unrepairable.Contains(reason)) _unrepairable.Add(reason);
        }

        private const byte MetadataRole = 1, L2Role = 2, DataRole = 3, CompressedRole = 4;

        // Clusters may be shared among L2 tables, among data clusters and among compressed payloads (snapshots share
        // them); any other sharing means two structures overlap.
        private static byte RoleOf(Qcow2ReferenceKind kind) => kind switch
        {
            Qcow2ReferenceKind.ActiveL2 or Qcow2ReferenceKind.SnapshotL2 => L2Role,
            Qcow2ReferenceKind.Data or Qcow2ReferenceKind.SnapshotData => DataRole,
            Qcow2ReferenceKind.Compressed or Qcow2ReferenceKind.SnapshotCompressed => CompressedRole,
            _ => MetadataRole,
        };

        private static string RoleName(byte role) => role switch
        {
            L2Role => "an L2 table",
            DataRole => "guest data",
            CompressedRole => "compressed data",
            _ => "metadata",
        };

        private static string Describe(Qcow2Reference r) => r.Kind switch
        {
            Qcow2ReferenceKind.Header => "the header",
            Qcow2ReferenceKind.RefcountTable => "the refcount table",
            Qcow2ReferenceKind.RefcountBlock => "a refcount block",
            Qcow2ReferenceKind.ActiveL1 => "the active L1 table",
            Qcow2ReferenceKind.ActiveL2 or Qcow2ReferenceKind.SnapshotL2 => "an L2 table",
            Qcow2ReferenceKind.Data or Qcow2ReferenceKind.SnapshotData => "a data cluster",
            Qcow2ReferenceKind.Compressed or Qcow2ReferenceKind.SnapshotCompressed => "a compressed cluster",
            Qcow2ReferenceKind.SnapshotTable => "the snapshot table",
            Qcow2ReferenceKind.SnapshotL1 => "a snapshot's L1 table",
            Qcow2ReferenceKind.BitmapDirectory => "the bitmap directory",
            Qcow2ReferenceKind.BitmapTable => "a bitmap table",
            Qcow2ReferenceKind.BitmapData => "bitmap data",
            _ => "the encryption header",
        };
    }
}

/// <summary>A check's report with what a repair needs: the references of every cluster and what disagrees.</summary>
/// <param name="Report">The findings.</param>
/// <param name="Header">The header the check read.</param>
/// <param name="Referenced">References counted per host cluster.</param>
/// <param name="Mismatched">Clusters whose stored refcount differs from their references, with the stored value.</param>
internal sealed record Qcow2CheckAnalysis(Qcow2CheckReport Report, Qcow2Header Header, ushort[] Referenced,
    IReadOnlyList<(long Cluster, long Stored)> Mismatched);

/// <summary>Stored refcounts read straight from the file, one refcount block at a time.</summary>
internal sealed class Qcow2StoredRefcounts
{
    private readonly IStorage _storage;
    private readonly Qcow2Header _header;
    private readonly Qcow2Geometry _g;
    private const long CacheBytes = 16L << 20;
    private readonly byte[] _table;
    private readonly Dictionary<long, byte[]> _blocks = new();
    private readonly long _perBlock;

    public Qcow2StoredRefcounts(IStorage storage, Qcow2Header header)
    {
        _storage = storage;
        _header = header;
        _g = new Qcow2Geometry(header.ClusterBits);
        _table = new byte[Math.Min((long)header.RefcountTableClusters << header.ClusterBits, Qcow2Header.MaxRefcountTableBytes)];
        storage.ReadAt(header.RefcountTableOffset, _table);
        _perBlock = _g.ClusterSize * 8 / header.RefcountBits;
    }

    /// <summary>True when a refcount block covers <paramref name="cluster"/>.</summary>
    public bool IsCovered(long cluster) => BlockOffset(cluster / _perBlock) > 0;

    /// <summary>The stored refcount of <paramref name="cluster"/> (0 where no block covers it), or -1 when its table entry is misaligned.</summary>
    public long Get(long cluster)
    {
        long b = cluster / _perBlock, offset = BlockOffset(b);
        if (offset == 0) return 0;
        if (offset < 0) return -1;
        if (!_blocks.TryGetValue(b, out var block))
        {
            if ((_blocks.Count + 1) * _g.ClusterSize > CacheBytes) _blocks.Clear(); // bounded: a check walks the file mostly in order
            _storage.ReadAt(offset, block = new byte[_g.ClusterSize]);
            _blocks[b] = block;
        }
        return Qcow2Refcounts.ReadEntry(block, cluster % _perBlock, _header.RefcountBits);
    }

    // The block's offset, 0 when there is none, -1 when the entry is misaligned.
    private long BlockOffset(long b)
    {
        if (b < 0 || b * 8 >= _table.Length) return 0;
        long offset = (long)(BinaryPrimitives.ReadUInt64BigEndian(_table.AsSpan((int)(b * 8))) & Qcow2Entries.OffsetMask);
        return offset % _g.ClusterSize == 0 ? offset : -1;
    }
}
