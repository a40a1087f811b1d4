// Restoring a backup point (issue 11 "Restore, retention, verification"): the point's image is read through its
// chain of earlier points and converted into a standalone image in any format, every block checked against the
// manifest's block hashes as it is read (a mismatch discards the output); or, with -Instant, a new qcow2 overlay
// is made on the point's image, usable at once, which Merge-VDiskChain -Pull later makes standalone.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.Engine.Backup;

/// <summary>How to restore a point.</summary>
public sealed record RestoreOptions
{
    /// <summary>Restore the newest point taken at or before this time (null: the newest point).</summary>
    public DateTimeOffset? Time { get; init; }
    /// <summary>Format of the restored image.</summary>
    public ImageFormat DestinationFormat { get; init; } = ImageFormat.Qcow2;
    /// <summary>Variant of the destination format.</summary>
    public ImageSubformat Subformat { get; init; } = ImageSubformat.Default;
    /// <summary>Make a thin qcow2 overlay on the point instead of a copy.</summary>
    public bool Instant { get; init; }
    /// <summary>Replace an existing destination (never one a VM has open).</summary>
    public bool Overwrite { get; init; }
    /// <summary>Wait for another command working on the set instead of failing.</summary>
    public bool Wait { get; init; }
    /// <summary>Worker threads.</summary>
    public int ThrottleLimit { get; init; } = Environment.ProcessorCount;
}

/// <summary>What a restore did.</summary>
public sealed record RestoreResult
{
    /// <summary>Full path of the restored image.</summary>
    public required string Destination { get; init; }
    /// <summary>The point restored.</summary>
    public required BackupPointRecord Point { get; init; }
    /// <summary>Guest bytes written as data (0 for an instant restore).</summary>
    public long BytesWritten { get; init; }
    /// <summary>Blocks checked against the manifest's hashes.</summary>
    public long BlocksVerified { get; init; }
}

/// <summary>Restores backup points.</summary>
public static class RestoreBackup
{
    /// <summary>Restores a point of the set in <paramref name="setFolder"/> to <paramref name="destination"/>.</summary>
    public static RestoreResult Run(string setFolder, string destination, RestoreOptions options,
        IProgress<OperationProgress>? progress = null, CancellationToken cancel = default)
    {
        destination = Path.GetFullPath(destination);
        using var set = BackupSet.OpenForReading(setFolder, options.Wait, cancel);
        var point = FindPoint(set, options.Time);
        string image = set.PathOf(point.File);
        if (options.Instant)
        {
            if (options.DestinationFormat != ImageFormat.Qcow2)
                throw VDiskException.Invalid(destination, $"{destination}: an instant restore is a qcow2 overlay; it cannot be {FormatProbe.Name(options.DestinationFormat)}.");
            CreateImage.Run(destination, new CreateOptions { Format = ImageFormat.Qcow2, BackingPath = image, BackingPathRelative = false, BackingFormat = ImageFormat.Qcow2 },
                options.Overwrite, cancel: cancel);
            return new RestoreResult { Destination = destination, Point = point };
        }
        using var key = set.UnlockKey();
        var verifier = new HashVerifier(image, set.HashesOf(point), point.Source.VirtualSize, key?.HashKey);
        var result = ConvertImage.Run(image, destination, new ConvertOptions
        {
            SourceFormat = ImageFormat.Qcow2, DestinationFormat = options.DestinationFormat, Subformat = options.Subformat,
            SparseThreshold = BlockHash.BlockSize, ThrottleLimit = options.ThrottleLimit, Overwrite = options.Overwrite, Verifier = verifier,
        }, progress, cancel);
        return new RestoreResult { Destination = destination, Point = point, BytesWritten = result.BytesWritten, BlocksVerified = verifier.BlocksVerified };
    }

    /// <summary>The newest point at or before <paramref name="time"/> (null: the newest), else <see cref="VDiskErrorKind.NotFound"/>.</summary>
    public static BackupPointRecord FindPoint(BackupSet set, DateTimeOffset? time)
    {
        var point = set.Points.LastOrDefault(p => time is null || p.Time <= time.Value);
        if (point is null)
            throw new VDiskException(VDiskErrorKind.BackupPointNotFound, set.Folder, set.Points.Count == 0
                ? $"{set.Folder} holds no restore point."
                : $"{set.Folder} has no restore point at or before {time:u}; the oldest is from {set.Points[0].Time:u}.");
        return point;
    }

    // Checks every block the conversion reads against the manifest, and at the end that every block the manifest
    // says holds data was read (a block the conversion skips reads as zeroes).
    private sealed class HashVerifier : IReadVerifier
    {
        private readonly string _image;
        private readonly BlockHashTable _expected;
        private readonly long _size;
        private readonly byte[] _seen;
        private readonly byte[]? _hashKey;
        private long _verified;

        public HashVerifier(string image, BlockHashTable expected, long size, byte[]? hashKey)
        {
            _hashKey = hashKey;
            _image = image;
            _expected = expected;
            _size = size;
            _seen = new byte[(size + BlockHash.BlockSize - 1) / BlockHash.BlockSize];
        }

        public long BlocksVerified => Interlocked.Read(ref _verified);

        public void Observe(long offset, ReadOnlySpan<byte> data)
        {
            if (offset % BlockHash.BlockSize != 0) throw new InvalidOperationException("Restore chunks must start on a block boundary.");
            for (int at = 0; at < data.Length && offset + at < _size; at += BlockHash.BlockSize)
            {
                long block = (offset + at) / BlockHash.BlockSize;
                var hash = BlockHash.Of(data.Slice(at, (int)Math.Min(BlockHash.BlockSize, Math.Min(data.Length - at, _size - offset - at))), _hashKey);
                if (hash != _expected[block])
                    throw Mismatch(block, "does not match the hash the manifest recorded for it");
                _seen[block] = 1;
                Interlocked.Increment(ref _verified);
            }
        }

        public void Complete()
        {
            foreach (long block in _expected.NonZeroBlocks(0, _seen.Length))
                if (_seen[block] == 0) throw Mismatch(block, "reads as zeroes, but the manifest recorded data there");
        }

        private VDiskException Mismatch(long block, string problem) => new(VDiskErrorKind.Corrupt, _image,
            $"{_image}: the block at guest offset {block * BlockHash.BlockSize} (0x{block * BlockHash.BlockSize:x}) {problem}; " +
            "the backup is damaged and nothing was restored. Run Test-VDiskBackup on the set, and restore an earlier point.");
    }
}
