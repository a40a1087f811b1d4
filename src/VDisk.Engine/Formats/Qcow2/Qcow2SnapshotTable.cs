// The qcow2 internal snapshot table (qcow2.rst "Snapshots"): one variable-length entry per snapshot
// with its own L1 table, id, name, times and extra data; entries are 8-byte aligned.
using System.Buffers.Binary;
using System.Text;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>One internal snapshot.</summary>
public sealed record Qcow2Snapshot
{
    public required long L1TableOffset { get; init; }
    public required int L1Size { get; init; }
    public required string Id { get; init; }
    public required string Name { get; init; }
    /// <summary>When the snapshot was taken (UTC).</summary>
    public required DateTime Created { get; init; }
    /// <summary>Guest clock at the snapshot, in nanoseconds.</summary>
    public required ulong VmClockNanoseconds { get; init; }
    /// <summary>Bytes of saved VM state (RAM, devices) stored with the snapshot.</summary>
    public required long VmStateSize { get; init; }
    /// <summary>The disk size when the snapshot was taken (the header size when the entry does not record one).</summary>
    public required long DiskSize { get; init; }
    /// <summary>The instruction count of a record/replay run at the snapshot, or null when none was recorded.</summary>
    public long? Icount { get; init; }

    // The entry as stored, so rewriting the table keeps every byte of the entries it does not change.
    internal byte[] RawId { get; init; } = Array.Empty<byte>();
    internal byte[] RawName { get; init; } = Array.Empty<byte>();
    internal uint DateSeconds { get; init; }
    internal uint DateNanoseconds { get; init; }
    internal uint VmStateSize32 { get; init; }
    internal byte[] ExtraData { get; init; } = Array.Empty<byte>();

    /// <summary>A new snapshot entry as QEMU writes one: 24 bytes of extra data (VM state size, disk size, no icount).</summary>
    internal static Qcow2Snapshot Create(string id, string name, long l1TableOffset, int l1Size, long diskSize, DateTime now)
    {
        var extra = new byte[24];
        BinaryPrimitives.WriteInt64BigEndian(extra.AsSpan(8), diskSize);
        BinaryPrimitives.WriteUInt64BigEndian(extra.AsSpan(16), ulong.MaxValue); // icount: none
        long ticks = (now.ToUniversalTime() - DateTime.UnixEpoch).Ticks;
        return new Qcow2Snapshot
        {
            L1TableOffset = l1TableOffset, L1Size = l1Size, Id = id, Name = name,
            Created = DateTime.UnixEpoch.AddTicks(ticks - ticks % 10), VmClockNanoseconds = 0, VmStateSize = 0, DiskSize = diskSize,
            RawId = Encoding.UTF8.GetBytes(id), RawName = Encoding.UTF8.GetBytes(name),
            DateSeconds = (uint)(ticks / TimeSpan.TicksPerSecond), DateNanoseconds = (uint)(ticks % TimeSpan.TicksPerSecond * 100),
            ExtraData = extra,
        };
    }
}

/// <summary>Reads the snapshot table.</summary>
public static class Qcow2SnapshotTable
{
    private const int FixedLength = 40;
    private const int MaxExtraData = 1024;          // QCOW_MAX_SNAPSHOT_EXTRA_DATA
    private const long MaxTableBytes = 64L << 20;   // QCOW_MAX_SNAPSHOTS_SIZE
    private const int NamesInMessages = 10;

    /// <summary>Parses the table the header points to, validating every entry.</summary>
    public static IReadOnlyList<Qcow2Snapshot> Read(IStorage storage, Qcow2Header header) => Read(storage, header, out _);

    /// <summary>Parses the table and says how many bytes it occupies in the file.</summary>
    public static IReadOnlyList<Qcow2Snapshot> Read(IStorage storage, Qcow2Header header, out long tableBytes)
    {
        var snapshots = new List<Qcow2Snapshot>();
        tableBytes = 0;
        foreach (var entry in Entries(storage, header))
        {
            snapshots.Add(entry.ToSnapshot(header));
            tableBytes += entry.Length;
        }
        return snapshots;
    }

    /// <summary>Where each snapshot's L1 table is, and the table's size in bytes, without reading ids and names into strings.</summary>
    internal static IReadOnlyList<(long L1TableOffset, int L1Size)> L1Tables(IStorage storage, Qcow2Header header, out long tableBytes)
    {
        var tables = new List<(long, int)>();
        tableBytes = 0;
        foreach (var entry in Entries(storage, header))
        {
            tables.Add((entry.L1TableOffset, entry.L1Size));
            tableBytes += entry.Length;
        }
        return tables;
    }

    /// <summary>
    /// The snapshot whose id or name is <paramref name="idOrName"/> (ids win, as in qemu-img). The table is streamed:
    /// only the match becomes an object, so a huge table costs no more memory than a small one.
    /// </summary>
    public static Qcow2Snapshot Find(IStorage storage, Qcow2Header header, string idOrName)
    {
        var text = new char[ushort.MaxValue]; // ids and names compare as the strings Read gives (invalid UTF-8 decodes lossily)
        bool Is(ReadOnlySpan<byte> utf8) => text.AsSpan(0, Encoding.UTF8.GetChars(utf8, text)).SequenceEqual(idOrName);
        Qcow2Snapshot? byId = null, byName = null;
        var names = new List<string>();
        foreach (var entry in Entries(storage, header)) // to the end: a table that is corrupt further on is refused
        {
            if (byId is null && Is(entry.Id)) byId = entry.ToSnapshot(header);
            if (byName is null && Is(entry.Name)) byName = entry.ToSnapshot(header);
            if (names.Count < NamesInMessages) names.Add(Encoding.UTF8.GetString(entry.Name));
        }
        string path = storage.Name;
        return byId ?? byName ?? throw new VDiskException(VDiskErrorKind.SnapshotNotFound, path, $"{path}: no internal snapshot with id or name '{idOrName}'" +
            (header.SnapshotCount == 0 ? " (the image has no snapshots)."
                : $" (it has: {string.Join(", ", names)}{(header.SnapshotCount > names.Count ? $" and {header.SnapshotCount - names.Count} more" : "")})."));
    }

    /// <summary>The table holding <paramref name="snapshots"/>, as qcow2.rst lays it out (entries 8-byte aligned).</summary>
    internal static byte[] Serialize(IReadOnlyList<Qcow2Snapshot> snapshots)
    {
        long length = snapshots.Sum(EntryLength);
        if (length > MaxTableBytes) throw new InvalidOperationException($"a snapshot table of {length} bytes exceeds {MaxTableBytes >> 20} MiB");
        var table = new byte[length];
        int at = 0;
        foreach (var s in snapshots)
        {
            var e = table.AsSpan(at);
            BinaryPrimitives.WriteUInt64BigEndian(e, (ulong)s.L1TableOffset);
            BinaryPrimitives.WriteUInt32BigEndian(e[8..], (uint)s.L1Size);
            BinaryPrimitives.WriteUInt16BigEndian(e[12..], (ushort)s.RawId.Length);
            BinaryPrimitives.WriteUInt16BigEndian(e[14..], (ushort)s.RawName.Length);
            BinaryPrimitives.WriteUInt32BigEndian(e[16..], s.DateSeconds);
            BinaryPrimitives.WriteUInt32BigEndian(e[20..], s.DateNanoseconds);
            BinaryPrimitives.WriteUInt64BigEndian(e[24..], s.VmClockNanoseconds);
            BinaryPrimitives.WriteUInt32BigEndian(e[32..], s.VmStateSize32);
            BinaryPrimitives.WriteUInt32BigEndian(e[36..], (uint)s.ExtraData.Length);
            s.ExtraData.CopyTo(e[FixedLength..]);
            s.RawId.CopyTo(e[(FixedLength + s.ExtraData.Length)..]);
            s.RawName.CopyTo(e[(FixedLength + s.ExtraData.Length + s.RawId.Length)..]);
            at += (int)EntryLength(s);
        }
        return table;
    }

    private static long EntryLength(Qcow2Snapshot s) => (FixedLength + s.ExtraData.Length + s.RawId.Length + s.RawName.Length + 7) & ~7L;

    // Every entry, validated, read into one reused buffer (a consumer uses an entry before asking for the next).
    private static IEnumerable<RawEntry> Entries(IStorage storage, Qcow2Header header)
    {
        var entry = new RawEntry();
        var fixedPart = new byte[FixedLength];
        long offset = header.SnapshotsOffset, tableBytes = 0;
        for (int i = 0; i < header.SnapshotCount; i++)
        {
            storage.ReadAt(offset, fixedPart);
            entry.L1TableOffset = (long)BinaryPrimitives.ReadUInt64BigEndian(fixedPart);
            entry.L1Size = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(8)), int.MaxValue);
            entry.IdSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(12));
            entry.NameSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(14));
            entry.Seconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(16));
            entry.Nanoseconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(20));
            entry.VmClock = BinaryPrimitives.ReadUInt64BigEndian(fixedPart.AsSpan(24));
            entry.VmState = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(32));
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(36));
            string where = $"snapshot table entry {i}";
            if (extraSize > MaxExtraData)
                throw VDiskException.Corrupt(storage.Name, $"{where}: extra_data_size is {extraSize}; at most {MaxExtraData} is allowed.");
            entry.ExtraSize = (int)extraSize;
            if (entry.L1TableOffset < 0 || entry.L1TableOffset >= Qcow2Header.MaxHostOffset
                || entry.L1TableOffset % header.ClusterSize != 0 || (long)entry.L1Size * 8 > Qcow2Header.MaxL1Bytes)
                throw VDiskException.Corrupt(storage.Name, $"{where}: L1 table at 0x{entry.L1TableOffset:x} with {entry.L1Size} entries is unaligned, beyond the largest host offset, or too large.");
            int restLength = entry.ExtraSize + entry.IdSize + entry.NameSize;
            storage.ReadAt(offset + FixedLength, entry.Rest.AsSpan(0, restLength));
            long diskSize = entry.DiskSize(header);
            if (diskSize < 0 || Qcow2Header.RequiredL1Size(diskSize, header.ClusterBits) > entry.L1Size)
                throw VDiskException.Corrupt(storage.Name, $"{where}: disk size {diskSize} does not fit its L1 table of {entry.L1Size} entries.");
            entry.Length = (FixedLength + restLength + 7) & ~7L;
            tableBytes += entry.Length;
            if (tableBytes > MaxTableBytes)
                throw VDiskException.Corrupt(storage.Name, $"the snapshot table is larger than {MaxTableBytes >> 20} MiB.");
            yield return entry;
            offset += entry.Length;
        }
    }

    /// <summary>One entry as stored (qcow2.rst "Snapshot table entry"), its variable part in a reused buffer.</summary>
    private sealed class RawEntry
    {
        public readonly byte[] Rest = new byte[MaxExtraData + 2 * ushort.MaxValue];
        public long L1TableOffset, Length;
        public int L1Size, IdSize, NameSize, ExtraSize;
        public uint Seconds, Nanoseconds, VmState;
        public ulong VmClock;

        public ReadOnlySpan<byte> Extra => Rest.AsSpan(0, ExtraSize);
        public ReadOnlySpan<byte> Id => Rest.AsSpan(ExtraSize, IdSize);
        public ReadOnlySpan<byte> Name => Rest.AsSpan(ExtraSize + IdSize, NameSize);

        // Extra data: vm_state_size_large (8 bytes), disk_size (8), then fields this engine keeps but does not interpret.
        public long DiskSize(Qcow2Header header) => Extra.Length >= 16 ? (long)BinaryPrimitives.ReadUInt64BigEndian(Extra[8..]) : header.Size;

        public Qcow2Snapshot ToSnapshot(Qcow2Header header) => new()
        {
            L1TableOffset = L1TableOffset,
            L1Size = L1Size,
            Id = Encoding.UTF8.GetString(Id),
            Name = Encoding.UTF8.GetString(Name),
            Created = DateTime.UnixEpoch.AddSeconds(Seconds).AddTicks(Nanoseconds / 100),
            VmClockNanoseconds = VmClock,
            VmStateSize = Extra.Length >= 8 ? (long)BinaryPrimitives.ReadUInt64BigEndian(Extra) : VmState,
            DiskSize = DiskSize(header),
            Icount = Extra.Length >= 24 && BinaryPrimitives.ReadInt64BigEndian(Extra[16..]) is var icount and >= 0 ? icount : null,
            RawId = Id.ToArray(),
            RawName = Name.ToArray(),
            DateSeconds = Seconds,
            DateNanoseconds = Nanoseconds,
            VmStateSize32 = VmState,
            ExtraData = Extra.ToArray(),
        };
    }
}
