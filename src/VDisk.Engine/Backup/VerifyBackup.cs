// Verifying a backup set (issue 11 "Test-VDiskBackup"): every file of the set is re-read. The manifest checks its
// own checksum; each point's image and block hash file are compared with the checksum the manifest recorded, which
// finds a changed byte anywhere in them; then each point's image is read on its own (not through its chain) and
// every block it holds is hashed and compared with the point's block hash file, which names the guest offset of a
// damaged block, and the blocks it holds must be exactly those its hash file lists, over the right backing file.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.Engine.Backup;

/// <summary>One problem found in a backup set.</summary>
/// <param name="File">Full path of the damaged file.</param>
/// <param name="GuestOffset">The guest offset of the damaged block, where one is known.</param>
/// <param name="Message">What is wrong.</param>
public sealed record BackupProblem(string File, long? GuestOffset, string Message);

/// <summary>The result of checking one point (or, with no point, the manifest).</summary>
public sealed record BackupPointCheck
{
    /// <summary>The point checked; null when the manifest itself could not be read.</summary>
    public BackupPointRecord? Point { get; init; }
    /// <summary>Blocks hashed and compared.</summary>
    public long BlocksChecked { get; init; }
    /// <summary>Bytes of the set's files read.</summary>
    public long BytesRead { get; init; }
    /// <summary>What is wrong (empty: the point is intact).</summary>
    public required IReadOnlyList<BackupProblem> Problems { get; init; }
}

/// <summary>Checks backup sets.</summary>
public static class VerifyBackup
{
    /// <summary>
    /// Checks every point of the set in <paramref name="setFolder"/>, oldest first, and records the time in the
    /// manifest of each point found intact. A manifest that cannot be read gives one result with no point.
    /// </summary>
    public static IReadOnlyList<BackupPointCheck> Run(string setFolder, bool wait, IProgress<OperationProgress>? progress = null, CancellationToken cancel = default)
    {
        BackupSet set;
        try
        {
            set = BackupSet.OpenForWriting(setFolder, wait, cancel);
        }
        catch (VDiskException e) when (e.Kind == VDiskErrorKind.Corrupt)
        {
            return new[] { new BackupPointCheck { Problems = new[] { new BackupProblem(Path.Combine(Path.GetFullPath(setFolder), BackupManifest.FileName), null, e.Message) } } };
        }
        using (set)
        {
            using var key = set.UnlockKey(); // an encrypted set's blocks can only be read and checked with its passphrase
            var results = new List<BackupPointCheck>();
            long total = set.Points.Sum(p => p.StoredBytes), done = 0;
            foreach (var point in set.Points)
            {
                cancel.ThrowIfCancellationRequested();
                var check = CheckPoint(set, point, key?.HashKey, cancel);
                results.Add(check);
                done += point.StoredBytes;
                progress?.Report(new OperationProgress(done, total));
            }
            var now = DateTimeOffset.UtcNow;
            var points = set.Points.Zip(results, (p, r) => r.Problems.Count == 0 ? p with { Verified = now } : p).ToList();
            set.Save(set.Manifest! with { Points = points });
            return results.Select((r, i) => r with { Point = points[i] }).ToList();
        }
    }

    private static BackupPointCheck CheckPoint(BackupSet set, BackupPointRecord point, byte[]? hashKey, CancellationToken cancel)
    {
        var problems = new List<BackupProblem>();
        string image = set.PathOf(point.File), hashes = set.PathOf(point.HashFile);
        List<BlockHashEntry>? entries = null;
        try
        {
            entries = set.ReadHashes(point);
        }
        catch (Exception e) when (e is VDiskException or IOException)
        {
            problems.Add(new BackupProblem(hashes, null, e.Message));
        }
        if (!File.Exists(image))
        {
            problems.Add(new BackupProblem(image, null, $"{image}: the image of the point of {point.Time:u} is missing."));
            return new BackupPointCheck { Point = point, Problems = problems };
        }
        long bytesRead = new FileInfo(image).Length + (File.Exists(hashes) ? new FileInfo(hashes).Length : 0);
        string actual = FileChecksums.Of(image);
        bool fileChanged = actual != point.FileChecksum;
        long blocks = 0;
        if (entries != null)
        {
            try
            {
                blocks = CompareBlocks(set, point, image, entries, hashKey, problems, cancel);
            }
            catch (Exception e) when (e is VDiskException or IOException or InvalidDataException)
            {
                problems.Add(new BackupProblem(image, null, $"{image}: the image cannot be read: {e.Message}"));
            }
        }
        if (fileChanged && problems.Count == 0)
            problems.Add(new BackupProblem(image, null, $"{image} has changed since it was written (checksum {actual}, the manifest says {point.FileChecksum}), " +
                "although every block still reads as recorded: the change is in the file's metadata or unused space."));
        return new BackupPointCheck { Point = point, BlocksChecked = blocks, BytesRead = bytesRead, Problems = problems };
    }

    // Reads the point's image alone; every block it decides must be listed with that content, and no other.
    private static long CompareBlocks(BackupSet set, BackupPointRecord point, string image, List<BlockHashEntry> entries, byte[]? hashKey,
        List<BackupProblem> problems, CancellationToken cancel)
    {
        using var disk = new VirtualDisk(image, ImageChain.OpenFile(image, ImageFormat.Qcow2, writable: false), null, writable: false);
        string? backing = disk.Driver.Backing is { } b ? ImageChain.ResolveBackingPath(image, b.Path) : null;
        string? expectedBacking = point.Backing is null ? null : set.PathOf(point.Backing);
        if (backing != expectedBacking)
            problems.Add(new BackupProblem(image, null, $"{image} names the backing file '{backing ?? "(none)"}', but the manifest says '{expectedBacking ?? "(none)"}'."));
        if (disk.Length != point.Source.VirtualSize)
            problems.Add(new BackupProblem(image, null, $"{image} is {disk.Length} bytes long, but the manifest says {point.Source.VirtualSize}."));
        var listed = entries.ToDictionary(e => e.Block, e => e.Hash);
        var buffer = new byte[BlockHash.BlockSize];
        long checkedBlocks = 0;
        foreach (long block in AllocatedBlocks(disk, cancel))
        {
            long offset = block * BlockHash.BlockSize;
            var data = buffer.AsSpan(0, (int)Math.Min(BlockHash.BlockSize, disk.Length - offset));
            if (!listed.Remove(block, out var expected))
            {
                problems.Add(new BackupProblem(image, offset, $"{image} holds the block at guest offset {offset} (0x{offset:x}), which its block hash file does not list."));
                continue;
            }
            disk.Read(offset, data);
            checkedBlocks++;
            if (BlockHash.Of(data, hashKey) != expected)
                problems.Add(new BackupProblem(image, offset, $"{image}: the block at guest offset {offset} (0x{offset:x}) of the point of {point.Time:u} does not match its recorded hash."));
        }
        foreach (long block in listed.Keys.Order())
            problems.Add(new BackupProblem(image, block * BlockHash.BlockSize,
                $"{image} lacks the block at guest offset {block * BlockHash.BlockSize} (0x{block * BlockHash.BlockSize:x}) that its block hash file lists."));
        return checkedBlocks;
    }

    private static IEnumerable<long> AllocatedBlocks(VirtualDisk disk, CancellationToken cancel)
    {
        for (long pos = 0; pos < disk.Length;)
        {
            cancel.ThrowIfCancellationRequested();
            var m = disk.Driver.Map(pos, disk.Length - pos);
            if (m.Kind != ExtentKind.Unallocated)
                for (long block = pos / BlockHash.BlockSize; block * BlockHash.BlockSize < pos + m.Length; block++) yield return block;
            pos += m.Length;
        }
    }
}
