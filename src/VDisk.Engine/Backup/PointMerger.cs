// Rewriting one kept point of a prune (PruneBackup) so that it absorbs the removed points before it. The point K is
// read through its old chain (the removed points included) and written, with the backup copier, as a new image
// over the kept point B before the run, or standalone when there is none: only the blocks the run or K decides are
// looked at, and of those only the ones that read differently from B are stored (B's hashes say which), compressed
// as K was, zero clusters where K reads zeroes over B's data. Before the new files are handed back, every block is
// checked against the manifest: B's hashes with the new entries folded over them must equal K's hashes, so what
// the new image reads is exactly what K read. The image and its block hash file get fresh point names (leftovers
// to the next writer if the prune ends before its manifest names them) and are flushed.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.Engine.Backup;

/// <summary>Builds the new image and block hash file of a point a prune rewrites.</summary>
internal static class PointMerger
{
    /// <summary>A rewritten point: its new record (old file names, new hashes) and the fresh names its files were written under.</summary>
    public sealed record Merged(BackupPointRecord Record, string Image, string HashFile);

    /// <summary>Writes the new files of <paramref name="decision"/> (a <see cref="PruneAction.Rewrite"/>) into the set.</summary>
    /// <remarks>In an encrypted set, <paramref name="key"/> (the set's) encrypts the new image and keys its block hashes.</remarks>
    public static Merged Merge(BackupSet set, PruneDecision decision, BackupKey? key, int workers, IProgress<BackupProgress>? progress, CancellationToken cancel)
    {
        using var keyScope = key is null ? null : Crypto.ImageKeys.Use(new[] { key.Passphrase });
        var point = decision.Point;
        var backing = decision.NewBacking is null ? null : set.Points.Single(p => p.File == decision.NewBacking);
        var absorbed = set.Points.Where(p => decision.Absorbs.Contains(p.Time)).ToList();
        var previous = backing is null ? new BlockHashTable() : set.HashesOf(backing);
        var expected = set.HashesOf(point);
        var decided = absorbed.Append(point).SelectMany(set.ReadHashes).Select(e => e.Block).Distinct().Order().ToList();
        bool compress = Enum.TryParse<CompressionType>(point.Compression, out var compression);
        var kind = backing is null ? BackupKind.Full : BackupKind.Incremental;

        string name = set.NewPointName(point.Time, kind);
        string imagePath = set.PathOf(name + ".qcow2"), hashPath = set.PathOf(name + ".blockhashes");
        using var view = ImageChain.Open(set.PathOf(point.File), new OpenOptions { Format = ImageFormat.Qcow2 });
        var plan = CreateImage.Plan(imagePath, new CreateOptions
        {
            Format = ImageFormat.Qcow2, Size = view.Length, ClusterSize = BlockHash.BlockSize, CompressionType = compress ? compression : CompressionType.Zlib,
            BackingPath = backing is null ? null : set.PathOf(backing.File), BackingFormat = ImageFormat.Qcow2,
            Encryption = set.Manifest?.Encryption?.PointOptions, Passphrase = key?.Passphrase,
        }, overwrite: false);
        BackupCopier copier;
        try
        {
            using (var image = OutputFile.Begin(plan, overwrite: false))
            {
                CreateImage.Write(plan, image.Temp, cancel);
                using (var output = new VirtualDisk(image.Temp, ImageChain.OpenFile(image.Temp, ImageFormat.Qcow2, writable: true), null, writable: true))
                {
                    copier = new BackupCopier(view, output, previous, compress && key is null, workers, progress, cancel, key?.HashKey);
                    copier.Run(backing is null ? new[] { (0L, view.Length) } : Ranges(decided));
                    output.Flush();
                }
                image.Commit();
            }
            BackupSet.Step($"wrote {Path.GetFileName(imagePath)}");
            Check(set, point, expected, previous, copier.Entries, backing is null ? expected.NonZeroBlocks(0, long.MaxValue) : decided);
            BlockHashFile.Write(hashPath, copier.Entries);
            BackupSet.Step($"wrote {Path.GetFileName(hashPath)}");
        }
        catch
        {
            CreateImage.TryDelete(imagePath);
            CreateImage.TryDelete(hashPath);
            throw;
        }
        var record = point with
        {
            Kind = kind, Backing = backing?.File,
            FileChecksum = FileChecksums.Of(imagePath), HashFileChecksum = FileChecksums.Of(hashPath),
            ChangedBytes = copier.BytesChanged, StoredBytes = new FileInfo(imagePath).Length + new FileInfo(hashPath).Length, Verified = null,
        };
        return new Merged(record, Path.GetFileName(imagePath), Path.GetFileName(hashPath));
    }

    // Sorted block indices as guest byte ranges, neighbours merged.
    private static IEnumerable<(long Offset, long Length)> Ranges(IReadOnlyList<long> blocks)
    {
        for (int i = 0; i < blocks.Count;)
        {
            int j = i + 1;
            while (j < blocks.Count && blocks[j] == blocks[j - 1] + 1) j++;
            yield return (blocks[i] * BlockHash.BlockSize, (blocks[j - 1] - blocks[i] + 1) * BlockHash.BlockSize);
            i = j;
        }
    }

    // The new image reads, per block, its own entry or else the backing point's; that must be the point's old content
    // as the manifest records it, over every block that can differ (the ones looked at, and any entry written).
    private static void Check(BackupSet set, BackupPointRecord point, BlockHashTable expected, BlockHashTable previous,
        IReadOnlyList<BlockHashEntry> entries, IEnumerable<long> blocks)
    {
        var written = entries.ToDictionary(e => e.Block, e => e.Hash);
        foreach (long block in blocks.Concat(written.Keys))
        {
            var reads = written.TryGetValue(block, out var hash) ? hash : previous[block];
            if (reads != expected[block])
                throw VDiskException.Corrupt(set.PathOf(point.File),
                    $"the block at guest offset {block * BlockHash.BlockSize} of the point of {point.Time:u} does not read as the manifest " +
                    "recorded it, so the point cannot be merged; nothing was changed. Run Test-VDiskBackup on the set.");
        }
    }
}
