// A backup set on disk (issue 11 "The backup set"): a folder with the manifest, one qcow2 image and one block hash
// file per point, and a lock file. Writers (backup, prune) hold the lock exclusively and readers (restore, test)
// shared, so two backups into one set never interleave and nothing is pruned under a restore. Files named like
// points but not in the manifest are what an interrupted writer left; the next writer removes them, after it has
// finished a prune the manifest says is pending (BackupSet.Pending.cs), which a reader also has done first.
using System.Text.RegularExpressions;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Backup;

/// <summary>An open backup set: its folder, its manifest, and the lock held on it.</summary>
public sealed partial class BackupSet : IDisposable
{
    /// <summary>The lock file's name in a set's folder.</summary>
    public const string LockFileName = ".vdisk-backup.lock";

    private readonly FileStream _lock;

    private BackupSet(string folder, FileStream lockFile, BackupManifest? manifest)
    {
        Folder = folder;
        _lock = lockFile;
        Manifest = manifest;
    }

    /// <summary>Full path of the set's folder.</summary>
    public string Folder { get; }

    /// <summary>The manifest, or null for a set with no point yet.</summary>
    public BackupManifest? Manifest { get; private set; }

    /// <summary>The points, oldest first (none for a new set).</summary>
    public IReadOnlyList<BackupPointRecord> Points => Manifest?.Points ?? (IReadOnlyList<BackupPointRecord>)Array.Empty<BackupPointRecord>();

    /// <summary>True when <paramref name="folder"/> holds a backup manifest.</summary>
    public static bool IsSet(string folder) => File.Exists(Path.Combine(folder, BackupManifest.FileName));

    /// <summary>
    /// Opens the set in <paramref name="folder"/> for reading (shared lock): it must exist and hold a manifest
    /// (else <see cref="VDiskErrorKind.NotFound"/>).
    /// </summary>
    public static BackupSet OpenForReading(string folder, bool wait, CancellationToken cancel)
    {
        folder = Path.GetFullPath(folder);
        if (!IsSet(folder))
            throw new VDiskException(VDiskErrorKind.NotFound, folder, $"{folder} is not a backup set (it holds no {BackupManifest.FileName}).");
        var lockFile = Lock(folder, exclusive: false, wait, cancel);
        try
        {
            var set = new BackupSet(folder, lockFile, BackupManifest.Load(folder));
            if (set.Manifest?.Pending is null) return set;
            lockFile.Dispose(); // an interrupted prune: finish it (exclusively), then read
            using (OpenForWriting(folder, wait: true, cancel)) { }
            return OpenForReading(folder, wait, cancel);
        }
        catch
        {
            lockFile.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens (creating the folder and any missing parents) the set in <paramref name="folder"/> for writing: takes the
    /// lock exclusively and removes files an interrupted run left.
    /// </summary>
    public static BackupSet OpenForWriting(string folder, bool wait, CancellationToken cancel)
    {
        folder = Path.GetFullPath(folder);
        if (File.Exists(folder)) throw VDiskException.Invalid(folder, $"{folder} is a file, not a backup set folder.");
        Directory.CreateDirectory(folder);
        var lockFile = Lock(folder, exclusive: true, wait, cancel);
        try
        {
            var set = new BackupSet(folder, lockFile, BackupManifest.Load(folder));
            set.FinishPending(interrupted: true);
            set.RemoveLeftovers();
            return set;
        }
        catch
        {
            lockFile.Dispose();
            throw;
        }
    }

    /// <summary>Full path of a file of the set.</summary>
    public string PathOf(string fileName) => Path.Combine(Folder, fileName);

    /// <summary>The points <paramref name="point"/> is built on, its full backup first and itself last.</summary>
    public IReadOnlyList<BackupPointRecord> ChainOf(BackupPointRecord point)
    {
        var points = Points.ToList();
        int at = points.IndexOf(point);
        if (at < 0) throw new ArgumentException("The point is not in this set.", nameof(point));
        int start = at;
        while (points[start].Kind != BackupKind.Full) start--;
        return points.GetRange(start, at - start + 1);
    }

    /// <summary>
    /// The hash of every block of <paramref name="point"/>, from its chain's block hash files, each checked against
    /// the checksum the manifest holds for it (a mismatch is a <see cref="VDiskErrorKind.Corrupt"/> error).
    /// </summary>
    public BlockHashTable HashesOf(BackupPointRecord point) =>
        BlockHashTable.Fold(ChainOf(point).Select(ReadHashes));

    /// <summary>The block hash entries of one point, checked against the manifest.</summary>
    public List<BlockHashEntry> ReadHashes(BackupPointRecord point)
    {
        string path = PathOf(point.HashFile);
        if (!File.Exists(path))
            throw VDiskException.Corrupt(path, $"the block hash file of the point of {point.Time:u} is missing.");
        string actual = FileChecksums.Of(path);
        if (actual != point.HashFileChecksum)
            throw VDiskException.Corrupt(path, $"the block hash file of the point of {point.Time:u} has changed since it was written (checksum {actual}, the manifest says {point.HashFileChecksum}).");
        return BlockHashFile.Read(path);
    }

    /// <summary>
    /// The key of an encrypted set, from the passphrases in scope (<see cref="Crypto.ImageKeys"/>); null for a set in
    /// clear. None given is PassphraseRequired, a wrong one WrongPassphrase. The caller disposes it.
    /// </summary>
    internal BackupKey? UnlockKey() => Manifest?.Encryption is { } encryption ? BackupKey.Unlock(encryption, Crypto.ImageKeys.Current, Folder) : null;

    /// <summary>Replaces the manifest (atomically and durably).</summary>
    public void Save(BackupManifest manifest)
    {
        manifest.Save(Folder);
        Manifest = manifest;
    }

    /// <summary>Releases the lock.</summary>
    public void Dispose() => _lock.Dispose();

    /// <summary>The base name (without extension) of a new point's files, unique in the set.</summary>
    internal string NewPointName(DateTimeOffset time, BackupKind kind)
    {
        string stem = $"{time.UtcDateTime:yyyyMMdd'T'HHmmss'Z'}-{(kind == BackupKind.Full ? "full" : "inc")}";
        string name = stem;
        for (int n = 2; File.Exists(PathOf(name + ".qcow2")) || File.Exists(PathOf(name + ".blockhashes")); n++) name = $"{stem}-{n}";
        return name;
    }

    [GeneratedRegex(@"^[0-9]{8}T[0-9]{6}Z-(full|inc)(-[0-9]+)?\.(qcow2|blockhashes)$", RegexOptions.CultureInvariant)]
    private static partial Regex PointFileName();

    // Point files the manifest does not name: an interrupted backup's output, or a prune's removed points.
    private void RemoveLeftovers()
    {
        var named = Points.SelectMany(p => new[] { p.File, p.HashFile }).ToHashSet(StringComparer.Ordinal);
        foreach (string file in Directory.EnumerateFiles(Folder))
        {
            string name = Path.GetFileName(file);
            if (!PointFileName().IsMatch(name) || named.Contains(name)) continue;
            File.Delete(file);
            EngineWarnings.Warn($"Removed '{file}', left by a backup or prune of this set that was interrupted.");
        }
    }

    private static FileStream Lock(string folder, bool exclusive, bool wait, CancellationToken cancel)
    {
        string path = Path.Combine(folder, LockFileName);
        for (int attempt = 0; ; attempt++)
        {
            try
            {
                return new FileStream(path, exclusive ? FileMode.OpenOrCreate : FileMode.OpenOrCreate, FileAccess.ReadWrite,
                    exclusive ? FileShare.None : FileShare.Read);
            }
            catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
            {
                if (!wait)
                    throw new VDiskException(VDiskErrorKind.InUse, folder,
                        $"{folder}: another VDisk command is {(exclusive ? "using" : "writing")} this backup set; try again when it ends, or use -Wait.", e);
                cancel.WaitHandle.WaitOne(TimeSpan.FromMilliseconds(Math.Min(1000, 50 * (attempt + 1))));
                cancel.ThrowIfCancellationRequested();
            }
        }
    }
}
