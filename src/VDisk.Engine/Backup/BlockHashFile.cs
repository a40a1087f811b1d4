// The block hash file of one backup point (issue 11 "The backup set"): the hashes of exactly the blocks that point's
// image decides (data, or zeroes over its backing point), sorted by block. The hashes a point restores to are the
// newest entry per block down its chain (BlockHashTable); a block no point lists reads as zeroes. Kept beside the
// point's image as `NAME.blockhashes` rather than inside the manifest, so the manifest stays small and readable
// whatever the disk's size; the manifest records each file's checksum.
// Layout: "VDBKHASH", u32 version (1), u32 block size, u64 count, then count x (u64 block index, 32-byte hash),
// big-endian, indices strictly increasing.
using System.Buffers.Binary;
using VDisk.Engine.Core;

namespace VDisk.Engine.Backup;

/// <summary>One block's hash in a point.</summary>
public readonly record struct BlockHashEntry(long Block, BlockHash Hash);

/// <summary>Reads and writes block hash files.</summary>
public static class BlockHashFile
{
    private const int HeaderSize = 24, EntrySize = 8 + BlockHash.Size;
    private static ReadOnlySpan<byte> Magic => "VDBKHASH"u8;

    /// <summary>Writes <paramref name="entries"/> (sorted by block) to <paramref name="path"/> and flushes it to disk.</summary>
    public static void Write(string path, IReadOnlyList<BlockHashEntry> entries)
    {
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        var buffer = new byte[Math.Max(HeaderSize, EntrySize)];
        Magic.CopyTo(buffer);
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(8), 1);
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(12), BlockHash.BlockSize);
        BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(16), (ulong)entries.Count);
        file.Write(buffer, 0, HeaderSize);
        long previous = -1;
        foreach (var entry in entries)
        {
            if (entry.Block <= previous) throw new ArgumentException("Block hash entries must be sorted and unique.", nameof(entries));
            previous = entry.Block;
            BinaryPrimitives.WriteUInt64BigEndian(buffer, (ulong)entry.Block);
            entry.Hash.Write(buffer.AsSpan(8));
            file.Write(buffer, 0, EntrySize);
        }
        file.Flush(flushToDisk: true);
    }

    /// <summary>Reads a block hash file, checking its header, size and order; damage is a <see cref="VDiskErrorKind.Corrupt"/> error.</summary>
    public static List<BlockHashEntry> Read(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var header = new byte[HeaderSize];
        if (file.ReadAtLeast(header, HeaderSize, throwOnEndOfStream: false) < HeaderSize || !header.AsSpan(0, 8).SequenceEqual(Magic))
            throw VDiskException.Corrupt(path, "not a VDisk block hash file (bad magic).");
        uint version = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(8)), blockSize = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(12));
        ulong count = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(16));
        if (version != 1 || blockSize != BlockHash.BlockSize)
            throw VDiskException.Corrupt(path, $"block hash file version {version} with {blockSize}-byte blocks is not supported.");
        if (count != (ulong)(file.Length - HeaderSize) / EntrySize || (file.Length - HeaderSize) % EntrySize != 0)
            throw VDiskException.Corrupt(path, $"the block hash file says {count} entries but holds {file.Length - HeaderSize} bytes of them.");
        var entries = new List<BlockHashEntry>((int)Math.Min(count, 1 << 24));
        var buffer = new byte[EntrySize * 1024];
        long previous = -1;
        for (ulong done = 0; done < count;)
        {
            int n = (int)Math.Min(1024, count - done);
            file.ReadExactly(buffer, 0, n * EntrySize);
            for (int i = 0; i < n; i++)
            {
                var span = buffer.AsSpan(i * EntrySize, EntrySize);
                long block = (long)BinaryPrimitives.ReadUInt64BigEndian(span);
                if (block <= previous || block > long.MaxValue / BlockHash.BlockSize)
                    throw VDiskException.Corrupt(path, $"entry {done + (ulong)i} (block {block}) is out of order or out of range.");
                previous = block;
                entries.Add(new BlockHashEntry(block, BlockHash.Read(span[8..])));
            }
            done += (ulong)n;
        }
        return entries;
    }
}

/// <summary>The hash of every block of one restore point: its chain's entries folded, newest first; absent blocks are zeroes.</summary>
public sealed class BlockHashTable
{
    private readonly Dictionary<long, BlockHash> _nonZero = new();
    private long[]? _sorted;

    /// <summary>The table of a point whose chain (oldest first) lists <paramref name="layers"/>.</summary>
    public static BlockHashTable Fold(IEnumerable<IReadOnlyList<BlockHashEntry>> layers)
    {
        var table = new BlockHashTable();
        foreach (var layer in layers)
            foreach (var entry in layer)
                table.Set(entry.Block, entry.Hash);
        return table;
    }

    /// <summary>The expected hash of <paramref name="block"/>.</summary>
    public BlockHash this[long block] => _nonZero.TryGetValue(block, out var hash) ? hash : BlockHash.Zero;

    /// <summary>Blocks whose content is not all zeroes.</summary>
    public int NonZeroCount => _nonZero.Count;

    /// <summary>Records a block's hash (zeroes are not stored).</summary>
    public void Set(long block, BlockHash hash)
    {
        if (hash == BlockHash.Zero) _nonZero.Remove(block);
        else _nonZero[block] = hash;
        _sorted = null;
    }

    /// <summary>The blocks from <paramref name="first"/> up to (not including) <paramref name="end"/> that are not zeroes, ascending.</summary>
    public IEnumerable<long> NonZeroBlocks(long first, long end)
    {
        var sorted = _sorted ??= _nonZero.Keys.Order().ToArray();
        int at = Array.BinarySearch(sorted, first);
        if (at < 0) at = ~at;
        for (; at < sorted.Length && sorted[at] < end; at++) yield return sorted[at];
    }
}
