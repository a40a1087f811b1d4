// The manifest of a backup set (issue 11 "The backup set"): `vdisk-backup.json` in the set's folder, human-readable
// JSON, the one record of which restore points exist. It is written last by every operation, atomically (a new file
// flushed, renamed over the old one, the folder flushed), so a crash leaves the old manifest or the new one, and
// files it does not name are leftovers of an interrupted run. Names in it are plain file names inside the set's
// folder; anything else is refused as damage. A prune writes it twice: first with the final points and a pending
// list of renames and deletions (Pending), then, once those are done, without it (see PruneBackup).
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Backup;

/// <summary>How a restore point was made.</summary>
public enum BackupKind
{
    /// <summary>A standalone copy of the whole disk (the start of a chain).</summary>
    Full,
    /// <summary>Only what changed since the previous point, as an overlay on it.</summary>
    Incremental,
}

/// <summary>How the blocks to copy were found.</summary>
public enum ChangeDetection
{
    /// <summary>Everything the source holds was read (a full backup).</summary>
    Full,
    /// <summary>A persistent dirty bitmap in the source said which clusters changed; only those were read.</summary>
    Bitmap,
    /// <summary>The whole source was read and each block's hash compared with the previous point's.</summary>
    Hashes,
}

/// <summary>The source image as it was when a point was taken.</summary>
public sealed record BackupSourceIdentity
{
    /// <summary>Full path of the source image.</summary>
    public required string Path { get; init; }
    /// <summary>Its format.</summary>
    public required string Format { get; init; }
    /// <summary>Its virtual size in bytes.</summary>
    public required long VirtualSize { get; init; }
    /// <summary>A SHA-256 of the header fields that identify the image (format, size, cluster size, backing file name).</summary>
    public required string Fingerprint { get; init; }
}

/// <summary>One restore point in the manifest.</summary>
public sealed record BackupPointRecord
{
    /// <summary>When the source was read (UTC), also the point's name.</summary>
    public required DateTimeOffset Time { get; init; }
    /// <summary>Full or incremental.</summary>
    public required BackupKind Kind { get; init; }
    /// <summary>The point's qcow2 image, a file name in the set's folder.</summary>
    public required string File { get; init; }
    /// <summary>The previous point's image, which this one's image names as its backing file (null for a full backup).</summary>
    public string? Backing { get; init; }
    /// <summary>Checksum of the image file as written (see <see cref="FileChecksums"/>).</summary>
    public required string FileChecksum { get; init; }
    /// <summary>The block hash file (see <see cref="BlockHashFile"/>), a file name in the set's folder.</summary>
    public required string HashFile { get; init; }
    /// <summary>Checksum of the block hash file (see <see cref="FileChecksums"/>).</summary>
    public required string HashFileChecksum { get; init; }
    /// <summary>The source at the time.</summary>
    public required BackupSourceIdentity Source { get; init; }
    /// <summary>How the changed blocks were found.</summary>
    public required ChangeDetection ChangeDetection { get; init; }
    /// <summary>Why a bitmap was not used, when it could not be.</summary>
    public string? ChangeDetectionNote { get; init; }
    /// <summary>The dirty bitmap this point added to the source (tracks changes made after it), if any.</summary>
    public string? Bitmap { get; init; }
    /// <summary>Compression of the point's clusters: Zlib, Zstd or None.</summary>
    public required string Compression { get; init; }
    /// <summary>The point's image is LUKS-encrypted (the set's passphrase opens it).</summary>
    public bool Encrypted { get; init; }
    /// <summary>Guest bytes read from the source.</summary>
    public long BytesRead { get; init; }
    /// <summary>Guest bytes that differ from the previous point (data and zeroes), in whole blocks.</summary>
    public long ChangedBytes { get; init; }
    /// <summary>Bytes the point takes in the set: its image and its hash file.</summary>
    public long StoredBytes { get; init; }
    /// <summary>When Test-VDiskBackup last found the point intact (null: not since it was written).</summary>
    public DateTimeOffset? Verified { get; init; }
}

/// <summary>A file a pending prune renames over a point's file (both plain names in the set's folder).</summary>
/// <param name="From">The new file, written and flushed under a name of its own.</param>
/// <param name="To">The point file it replaces; both read as the same guest content.</param>
public sealed record BackupRename(string From, string To);

/// <summary>What is left to do of a prune once its manifest is written: renames first, then deletions.</summary>
public sealed record BackupPendingPrune
{
    /// <summary>New images and block hash files to rename over the files of the points they rewrite.</summary>
    public List<BackupRename> Renames { get; init; } = new();
    /// <summary>Files of removed points, deleted once every rename is done.</summary>
    public List<string> Deletes { get; init; } = new();
}

/// <summary>The manifest: the set's identity and its points, oldest first.</summary>
public sealed record BackupManifest
{
    /// <summary>The manifest's file name in a set's folder.</summary>
    public const string FileName = "vdisk-backup.json";

    /// <summary>Always "vdisk-backup".</summary>
    public string Format { get; init; } = "vdisk-backup";
    /// <summary>Layout version (1).</summary>
    public int Version { get; init; } = 1;
    /// <summary>A random id naming the set (and the dirty bitmaps it adds to sources).</summary>
    public required string SetId { get; init; }
    /// <summary>Bytes per hashed block.</summary>
    public int BlockSize { get; init; } = BlockHash.BlockSize;
    /// <summary>The block hash: SHA-256, or HMAC-SHA-256 in an encrypted set.</summary>
    public string HashAlgorithm { get; init; } = "SHA-256";
    /// <summary>How the set is encrypted; null for a set in clear.</summary>
    public BackupEncryption? Encryption { get; init; }
    /// <summary>The hash algorithm name of an encrypted set.</summary>
    internal const string KeyedHashAlgorithm = "HMAC-SHA-256";
    /// <summary>Restore points, oldest first.</summary>
    public List<BackupPointRecord> Points { get; init; } = new();
    /// <summary>
    /// A prune that has decided and written everything but not yet put its files in place (see
    /// <see cref="PruneBackup"/>); null when the set is in a committed state. The next writer finishes it.
    /// </summary>
    public BackupPendingPrune? Pending { get; init; }
    /// <summary>SHA-256 of the manifest as written with this field left out: any change to the file is found.</summary>
    public string? Checksum { get; init; }

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>Reads the manifest in <paramref name="folder"/>, or null when there is none; damage is a <see cref="VDiskErrorKind.Corrupt"/> error.</summary>
    public static BackupManifest? Load(string folder)
    {
        string path = Path.Combine(folder, FileName);
        if (!System.IO.File.Exists(path)) return null;
        BackupManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<BackupManifest>(System.IO.File.ReadAllBytes(path), Json);
            if (manifest != null && manifest.Checksum != manifest.ComputeChecksum())
                throw VDiskException.Corrupt(path, "the backup manifest has changed since VDisk wrote it (its checksum does not match); " +
                    "the set cannot be trusted until it is checked (Test-VDiskBackup) and repaired from a good copy.");
        }
        catch (JsonException e)
        {
            throw VDiskException.Corrupt(path, $"the backup manifest cannot be read: {e.Message}");
        }
        if (manifest is null) throw VDiskException.Corrupt(path, "the backup manifest is empty.");
        manifest.Validate(path);
        return manifest;
    }

    /// <summary>Writes the manifest into <paramref name="folder"/> atomically and durably.</summary>
    public void Save(string folder)
    {
        string path = Path.Combine(folder, FileName);
        string temp = TemporaryOutputs.NameFor(path);
        try
        {
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                JsonSerializer.Serialize(file, this with { Checksum = ComputeChecksum() }, Json);
                file.Flush(flushToDisk: true);
            }
            System.IO.File.Move(temp, path, overwrite: true);
            HostFileSync.Directory(folder);
        }
        finally
        {
            if (System.IO.File.Exists(temp)) System.IO.File.Delete(temp);
        }
    }

    private string ComputeChecksum() =>
        Convert.ToHexString(SHA256.HashData(JsonSerializer.SerializeToUtf8Bytes(this with { Checksum = null }, Json))).ToLowerInvariant();

    private void Validate(string path)
    {
        if (Format != "vdisk-backup" || Version != 1)
            throw VDiskException.Corrupt(path, $"not a VDisk backup manifest of a known version (format '{Format}', version {Version}).");
        if (BlockSize != BlockHash.BlockSize || HashAlgorithm != (Encryption is null ? "SHA-256" : KeyedHashAlgorithm) || string.IsNullOrEmpty(SetId) || Points is null)
            throw VDiskException.Corrupt(path, "the manifest's block size, hash algorithm or set id is not one VDisk writes.");
        string? previous = null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var point in Points)
        {
            foreach (string? name in new[] { point.File, point.HashFile, point.Backing })
                if (name != null && (name.Length == 0 || name != Path.GetFileName(name) || name is "." or ".."))
                    throw VDiskException.Corrupt(path, $"the point of {point.Time:u} names '{name}', which is not a file name inside the set's folder.");
            if (!seen.Add(point.File) || !seen.Add(point.HashFile))
                throw VDiskException.Corrupt(path, $"the point of {point.Time:u} reuses a file name of another point.");
            if ((point.Kind == BackupKind.Full) != (point.Backing is null) || (point.Backing != null && point.Backing != previous))
                throw VDiskException.Corrupt(path, $"the point of {point.Time:u} ({point.Kind}) does not follow the point before it.");
            previous = point.File;
        }
        var pending = Pending is null ? Array.Empty<string>() : Pending.Renames.SelectMany(r => new[] { r.From, r.To }).Concat(Pending.Deletes);
        if (pending.Any(name => name is null || name.Length == 0 || name != Path.GetFileName(name) || name is "." or ".." or FileName))
            throw VDiskException.Corrupt(path, "the manifest's pending prune names a file that is not a point file inside the set's folder.");
    }
}
