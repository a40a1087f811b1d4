// Test data for VMDK tests: deterministic patterns, scattered writes at awkward offsets, a raw model of
// the expected disk, and whole-disk comparisons in chunks.
using VDisk.Engine.Core;
using Xunit;

namespace VDisk.Engine.Tests.Vmdk;

internal static class VmdkTestData
{
    public const int Grain = 65536;
    public const long TwoGiB = 2L << 30;

    /// <summary>Deterministic pseudo-random bytes.</summary>
    public static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    /// <summary>Writes at the first byte, across grain and extent boundaries, in the middle and at the last byte.</summary>
    public static List<(long Offset, byte[] Data)> ScatteredWrites(long size)
    {
        var offsets = new List<(long, int)>
        {
            (0, 1), (1, 700), (Grain - 10, 20), (3 * Grain, Grain), (5 * Grain + 512, 3 * Grain + 100),
            (size / 2 + 12345, 70000), (size - 70000, 69999), (size - 1, 1),
        };
        if (size > TwoGiB + Grain) offsets.Add((TwoGiB - 300, 600));
        return offsets.Select((o, i) => (o.Item1, Pattern(o.Item2, 1000 + i))).ToList();
    }

    /// <summary>Applies writes to a disk.</summary>
    public static void Apply(VirtualDisk disk, IEnumerable<(long Offset, byte[] Data)> writes)
    {
        foreach (var (offset, data) in writes) disk.Write(offset, data);
    }

    /// <summary>A raw file of <paramref name="size"/> bytes holding <paramref name="writes"/> (holes elsewhere).</summary>
    public static void WriteRaw(string path, long size, IEnumerable<(long Offset, byte[] Data)> writes)
    {
        using var f = new FileStream(path, FileMode.Create, FileAccess.Write);
        f.SetLength(size);
        foreach (var (offset, data) in writes)
        {
            f.Position = offset;
            f.Write(data);
        }
    }

    /// <summary>Reads the whole disk in chunks and compares it with the model (zeroes plus the writes, later ones winning).</summary>
    public static void AssertContent(VirtualDisk disk, long size, IReadOnlyList<(long Offset, byte[] Data)> writes)
    {
        Assert.Equal(size, disk.Length);
        const int Chunk = 8 << 20;
        var actual = new byte[Chunk];
        var expected = new byte[Chunk];
        for (long pos = 0; pos < size; pos += Chunk)
        {
            int n = (int)Math.Min(Chunk, size - pos);
            Array.Clear(expected);
            foreach (var (offset, data) in writes)
            {
                long from = Math.Max(offset, pos), to = Math.Min(offset + data.Length, pos + n);
                if (from < to) data.AsSpan((int)(from - offset), (int)(to - from)).CopyTo(expected.AsSpan((int)(from - pos)));
            }
            disk.Read(pos, actual.AsSpan(0, n));
            AssertSame(expected.AsSpan(0, n), actual.AsSpan(0, n), pos);
        }
    }

    /// <summary>Compares a disk with a raw file byte for byte.</summary>
    public static void AssertSameAsRaw(VirtualDisk disk, string rawPath)
    {
        using var raw = File.OpenHandle(rawPath);
        long size = RandomAccess.GetLength(raw);
        Assert.Equal(size, disk.Length);
        const int Chunk = 8 << 20;
        var actual = new byte[Chunk];
        var expected = new byte[Chunk];
        for (long pos = 0; pos < size; pos += Chunk)
        {
            int n = (int)Math.Min(Chunk, size - pos);
            RandomAccess.Read(raw, expected.AsSpan(0, n), pos);
            disk.Read(pos, actual.AsSpan(0, n));
            AssertSame(expected.AsSpan(0, n), actual.AsSpan(0, n), pos);
        }
    }

    private static void AssertSame(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, long pos)
    {
        if (expected.SequenceEqual(actual)) return;
        int i = 0;
        while (expected[i] == actual[i]) i++;
        Assert.Fail($"disk differs at guest offset {pos + i}: expected 0x{expected[i]:x2}, read 0x{actual[i]:x2}");
    }
}
