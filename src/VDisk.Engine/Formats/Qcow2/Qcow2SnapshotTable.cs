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
    /// <summary>Extra data bytes beyond the fields we interpret, preserved on rewrite.</summary>
    public byte[] UnknownExtraData { get; init; } = Array.Empty<byte>();
}

/// <summary>Reads the snapshot table.</summary>
public static class Qcow2SnapshotTable
{
    private const int FixedLength = 40;
    private const int MaxExtraData = 1024;          // QCOW_MAX_SNAPSHOT_EXTRA_DATA
    private const long MaxTableBytes = 64L << 20;   // QCOW_MAX_SNAPSHOTS_SIZE

    /// <summary>Parses the table the header points to, validating every entry.</summary>
    public static IReadOnlyList<Qcow2Snapshot> Read(IStorage storage, Qcow2Header header) => Read(storage, header, out _);

    /// <summary>Parses the table and says how many bytes it occupies in the file.</summary>
    public static IReadOnlyList<Qcow2Snapshot> Read(IStorage storage, Qcow2Header header, out long tableBytes)
    {
        var snapshots = new List<Qcow2Snapshot>(header.SnapshotCount);
        long offset = header.SnapshotsOffset;
        tableBytes = 0;
        var fixedPart = new byte[FixedLength];
        for (int i = 0; i < header.SnapshotCount; i++)
        {
            storage.ReadAt(offset, fixedPart);
            long l1Offset = (long)BinaryPrimitives.ReadUInt64BigEndian(fixedPart);
            int l1Size = (int)Math.Min(BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(8)), int.MaxValue);
            int idSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(12));
            int nameSize = BinaryPrimitives.ReadUInt16BigEndian(fixedPart.AsSpan(14));
            uint seconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(16));
            uint nanoseconds = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(20));
            ulong vmClock = BinaryPrimitives.ReadUInt64BigEndian(fixedPart.AsSpan(24));
            uint vmState = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(32));
            uint extraSize = BinaryPrimitives.ReadUInt32BigEndian(fixedPart.AsSpan(36));
            string where = $"snapshot table entry {i}";
            if (extraSize > MaxExtraData)
                throw VDiskException.Corrupt(storage.Name, $"{where}: extra_data_size is {extraSize}; at most {MaxExtraData} is allowed.");
            if (l1Offset % header.ClusterSize != 0 || (long)l1Size * 8 > Qcow2Header.MaxL1Bytes)
                throw VDiskException.Corrupt(storage.Name, $"{where}: L1 table at 0x{l1Offset:x} with {l1Size} entries is unaligned or too large.");
            var rest = new byte[extraSize + idSize + nameSize];
            storage.ReadAt(offset + FixedLength, rest);
            var extra = rest.AsSpan(0, (int)extraSize);
            long vmStateSize = extra.Length >= 8 ? (long)BinaryPrimitives.ReadUInt64BigEndian(extra) : vmState;
            long diskSize = extra.Length >= 16 ? (long)BinaryPrimitives.ReadUInt64BigEndian(extra[8..]) : header.Size;
            if (diskSize < 0 || Qcow2Header.RequiredL1Size(diskSize, header.ClusterBits) > l1Size)
                throw VDiskException.Corrupt(storage.Name, $"{where}: disk size {diskSize} does not fit its L1 table of {l1Size} entries.");
            snapshots.Add(new Qcow2Snapshot
            {
                L1TableOffset = l1Offset,
                L1Size = l1Size,
                Id = Encoding.UTF8.GetString(rest, (int)extraSize, idSize),
                Name = Encoding.UTF8.GetString(rest, (int)extraSize + idSize, nameSize),
                Created = DateTime.UnixEpoch.AddSeconds(seconds).AddTicks(nanoseconds / 100),
                VmClockNanoseconds = vmClock,
                VmStateSize = vmStateSize,
                DiskSize = diskSize,
                UnknownExtraData = extra.Length > 16 ? extra[16..].ToArray() : Array.Empty<byte>(),
            });
            long entryLength = (FixedLength + rest.Length + 7) & ~7L;
            offset += entryLength;
            tableBytes += entryLength;
            if (tableBytes > MaxTableBytes)
                throw VDiskException.Corrupt(storage.Name, $"the snapshot table is larger than {MaxTableBytes >> 20} MiB.");
        }
        return snapshots;
    }

    /// <summary>The snapshot whose id or name is <paramref name="idOrName"/> (ids win, as in qemu-img).</summary>
    public static Qcow2Snapshot Find(IReadOnlyList<Qcow2Snapshot> snapshots, string idOrName, string path)
        => snapshots.FirstOrDefault(s => s.Id == idOrName)
           ?? snapshots.FirstOrDefault(s => s.Name == idOrName)
           ?? throw new VDiskException(VDiskErrorKind.SnapshotNotFound, path, $"{path}: no internal snapshot with id or name '{idOrName}'" +
               (snapshots.Count == 0 ? " (the image has no snapshots)." : $" (it has: {string.Join(", ", snapshots.Select(s => s.Name))})."));
}
