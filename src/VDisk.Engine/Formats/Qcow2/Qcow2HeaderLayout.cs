// Header rewrites a power cut cannot tear into something unreadable (qcow2.rst "Header", "Header extensions";
// DESIGN.md "Header: one updater"). A disk completes each 512-byte sector of a write on its own, so a change that
// spans sectors can be cut in half. The bytes of the first cluster fall in two groups: those the header references
// (the fixed fields, the extension list up to its end marker, the backing file name) and those nobody reads. A
// change is planned so that:
//   - bytes the new header does not reference are left as they are (an old backing name stays behind, unread);
//   - a backing file name that changes goes where the old header does not look, so the old one stays intact;
//   - bytes the old header does not reference are written first, behind a barrier;
//   - the referenced bytes that change follow one sector at a time, the first sector last: it holds the backing
//     name's offset and length, so switching to a new name is a write inside one sector.
// Renaming the backing file, changing its recorded format and dropping it (the format extension stays, unread, as
// QEMU leaves it) each end as such a one-sector switch.
using System.Buffers.Binary;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>Plans header writes that keep every intermediate state of the first cluster a valid header.</summary>
internal static class Qcow2HeaderLayout
{
    /// <summary>The unit a disk writes atomically.</summary>
    public const int SectorSize = 512;

    /// <summary>Byte ranges [Start, End) of <paramref name="header"/> that a reader of the header looks at.</summary>
    public static List<(int Start, int End)> Referenced(ReadOnlySpan<byte> header)
    {
        int version = (int)Qcow2Header.U32(header, Qcow2Header.VersionOffset);
        int fixedLength = version >= 3 ? (int)Math.Min(Qcow2Header.U32(header, Qcow2Header.HeaderLengthOffset), (uint)header.Length) : Qcow2Header.V2Length;
        var (nameOffset, nameLength) = BackingName(header);
        int limit = nameOffset > 0 ? (int)Math.Min(nameOffset, header.Length) : header.Length;
        int pos = fixedLength;
        while (pos + 8 <= limit)
        {
            uint type = BinaryPrimitives.ReadUInt32BigEndian(header[pos..]);
            uint length = BinaryPrimitives.ReadUInt32BigEndian(header[(pos + 4)..]);
            pos = (int)Math.Min(limit, pos + 8L + ((length + 7L) & ~7L));
            if (type == Qcow2HeaderExtension.EndType) break;
        }
        var ranges = new List<(int, int)> { (0, Math.Max(pos, fixedLength)) };
        if (nameLength > 0) ranges.Add((nameOffset, nameOffset + nameLength));
        return ranges;
    }

    /// <summary>
    /// <paramref name="next"/> (a canonical serialisation) with its backing name moved where it does not overlap what
    /// <paramref name="onDisk"/> references: an unchanged name stays where it is, a new one goes after the extensions
    /// or after the old name. When the cluster has no room for that, the canonical place is kept. With
    /// <paramref name="clearance"/>, the name keeps that many bytes free after the extensions (room for an extension a
    /// later change adds without touching the name).
    /// </summary>
    public static byte[] PlaceBackingName(byte[] next, byte[] onDisk, int clearance = 0)
    {
        var (at, length) = BackingName(next);
        if (length == 0) return next;
        var name = next.AsSpan(at, length);
        var (oldAt, oldLength) = BackingName(onDisk);
        int nextEnd = Referenced(next)[0].End + clearance;
        int extensionsEnd = Align8(Math.Max(nextEnd, Referenced(onDisk)[0].End));
        int target;
        if (oldLength == length && oldAt >= nextEnd && onDisk.AsSpan(oldAt, oldLength).SequenceEqual(name))
            target = oldAt; // unchanged: stays
        else
        {
            target = extensionsEnd;
            if (oldLength > 0 && target < oldAt + oldLength && oldAt < target + length) target = Align8(oldAt + oldLength);
            if (target + length > next.Length) return next;
        }
        if (target == at) return next;
        var placed = (byte[])next.Clone();
        placed.AsSpan(at, length).Clear();
        name.CopyTo(placed.AsSpan(target));
        BinaryPrimitives.WriteUInt64BigEndian(placed.AsSpan(Qcow2Header.BackingFileOffsetOffset), (ulong)target);
        return placed;
    }

    /// <summary>
    /// What the first cluster holds after changing <paramref name="onDisk"/> into <paramref name="next"/> (bytes the new
    /// header does not reference keep their old value), and the writes that get it there, in phases that must each be
    /// durable before the next begins.
    /// </summary>
    public static (byte[] Result, List<List<(int Offset, int Length)>> Phases) Plan(byte[] onDisk, byte[] next)
        => Plan(onDisk, next, out _);

    /// <summary>
    /// As <see cref="Plan(byte[], byte[])"/>; <paramref name="referencedPhases"/> counts the phases that change bytes the
    /// old header references (one means the switch is a single write inside one sector).
    /// </summary>
    public static (byte[] Result, List<List<(int Offset, int Length)>> Phases) Plan(byte[] onDisk, byte[] next, out int referencedPhases)
    {
        int size = Math.Max(onDisk.Length, next.Length);
        var result = new byte[size];
        onDisk.CopyTo(result, 0);
        foreach (var (start, end) in Referenced(next))
            next.AsSpan(start, Math.Min(end, next.Length) - start).CopyTo(result.AsSpan(start));
        var old = Referenced(onDisk);
        var kind = new byte[size]; // 0 unchanged, 1 changes a byte nobody reads yet, 2 changes a byte the old header references
        for (int i = 0; i < size; i++)
            if (result[i] != At(onDisk, i)) kind[i] = old.Any(r => i >= r.Start && i < r.End) ? (byte)2 : (byte)1;

        var phases = new List<List<(int, int)>> { Runs(kind, 1, 0, size) };
        int sectors = (size + SectorSize - 1) / SectorSize;
        for (int s = 1; s <= sectors; s++)
        {
            int sector = s % sectors; // sectors 1, 2, ... and sector 0 last
            phases.Add(Runs(kind, 2, sector * SectorSize, Math.Min(size, (sector + 1) * SectorSize)));
        }
        phases.RemoveAll(p => p.Count == 0);
        referencedPhases = phases.Count - (phases.Count > 0 && kind.Contains((byte)1) ? 1 : 0);
        return (result, phases);
    }

    // Offset and length of the backing name a serialised header names (0, 0 when none).
    private static (int Offset, int Length) BackingName(ReadOnlySpan<byte> header)
    {
        ulong offset = Qcow2Header.U64(header, Qcow2Header.BackingFileOffsetOffset);
        uint length = Qcow2Header.U32(header, Qcow2Header.BackingFileSizeOffset);
        if (offset == 0 || length == 0 || offset > (ulong)header.Length || length > (ulong)header.Length - offset) return (0, 0);
        return ((int)offset, (int)length);
    }

    // Maximal runs of bytes of `wanted` kind in [from, to), joined across unchanged bytes but never across the other kind.
    private static List<(int, int)> Runs(byte[] kind, byte wanted, int from, int to)
    {
        var runs = new List<(int, int)>();
        int start = -1, last = -1;
        for (int i = from; i < to; i++)
        {
            if (kind[i] == wanted)
            {
                if (start < 0) start = i;
                last = i;
            }
            else if (kind[i] != 0 && start >= 0)
            {
                runs.Add((start, last - start + 1));
                start = -1;
            }
        }
        if (start >= 0) runs.Add((start, last - start + 1));
        return runs;
    }

    private static byte At(byte[] bytes, int index) => index < bytes.Length ? bytes[index] : (byte)0;

    private static int Align8(int n) => (n + 7) & ~7;
}
