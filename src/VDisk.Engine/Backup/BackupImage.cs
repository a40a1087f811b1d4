// Backing up an image into a backup set (issue 11 "Backup-VDisk"): the first run, or -Full, writes a compressed
// full backup; later runs write an incremental point holding only the blocks that changed, as a qcow2 overlay on
// the previous point (the seed's chain base <- inc1 <- inc2, readable by plain qemu-img). Changed blocks are found
// from a dirty bitmap where a usable one exists, else by hashing every block the source holds. The point's image
// and block hash file are written under temporary names, flushed and renamed; the manifest is written last, so a
// crash or Ctrl+C at any moment leaves every earlier point as it was.
using System.Security.Cryptography;
using System.Text;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Backup;

/// <summary>How to back up an image.</summary>
public sealed record BackupOptions
{
    /// <summary>Write a full backup (a new chain) even when the set has points.</summary>
    public bool Full { get; init; }
    /// <summary>Compress the point's clusters.</summary>
    public bool Compress { get; init; } = true;
    /// <summary>The compression algorithm (zlib reads everywhere; zstd is faster).</summary>
    public CompressionType CompressionType { get; init; } = CompressionType.Zlib;
    /// <summary>Format of the source (null: probe).</summary>
    public ImageFormat? SourceFormat { get; init; }
    /// <summary>Read a source another process (a running VM) has open for writing; the copy may then be inconsistent.</summary>
    public bool Force { get; init; }
    /// <summary>Wait for another command working on the set instead of failing.</summary>
    public bool Wait { get; init; }
    /// <summary>Worker threads for reading, hashing and compressing.</summary>
    public int ThrottleLimit { get; init; } = Environment.ProcessorCount;
    /// <summary>The point's time (null: now). Points of a set must be in time order.</summary>
    public DateTimeOffset? Time { get; init; }
    /// <summary>
    /// Start a new set encrypted with these LUKS settings and <see cref="Passphrase"/>. An encrypted set's later points
    /// are encrypted whatever this says, with the passphrase (from <see cref="Passphrase"/> or the ones in scope) that opens it.
    /// </summary>
    public Crypto.LuksFormatOptions? Encryption { get; init; }
    /// <summary>The set's passphrase (owned by the caller).</summary>
    public Crypto.Passphrase? Passphrase { get; init; }
}

/// <summary>What a backup did.</summary>
public sealed record BackupResult
{
    /// <summary>Full path of the set's folder.</summary>
    public required string SetPath { get; init; }
    /// <summary>The new point as the manifest records it.</summary>
    public required BackupPointRecord Point { get; init; }
    /// <summary>Things the caller should be told (a bitmap that could not be used, leftovers removed).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = Array.Empty<string>();
}

/// <summary>Backs up images into backup sets.</summary>
public static class BackupImage
{
    /// <summary>
    /// Backs up <paramref name="source"/> (with its backing chain: the guest view) into the set in
    /// <paramref name="setFolder"/>, creating the set on the first run. The source is opened for consistent reads, so
    /// an image a VM is writing is refused with <see cref="VDiskErrorKind.InUse"/> unless <see cref="BackupOptions.Force"/>.
    /// </summary>
    public static BackupResult Run(string source, string setFolder, BackupOptions options,
        IProgress<BackupProgress>? progress = null, CancellationToken cancel = default)
    {
        source = Path.GetFullPath(source);
        if (options.ThrottleLimit < 1) throw VDiskException.Invalid(source, $"Throttle limit {options.ThrottleLimit} is invalid: use 1 or more workers.");
        using var warnings = OperationWarnings.Collect();
        using var set = BackupSet.OpenForWriting(setFolder, options.Wait, cancel);
        var time = (options.Time ?? DateTimeOffset.UtcNow).ToUniversalTime();
        var last = set.Points.Count > 0 ? set.Points[^1] : null;
        if (last != null && time <= last.Time)
            throw VDiskException.Invalid(set.Folder, $"{set.Folder}: a point at {time:u} cannot follow the newest point, taken at {last.Time:u}.");
        var kind = options.Full || last is null ? BackupKind.Full : BackupKind.Incremental;
        string setId = set.Manifest?.SetId ?? Guid.NewGuid().ToString("N");
        var (encryption, key) = SetKey(set, options); // a wrong or missing passphrase stops the backup before the source is touched
        using var keyOwner = key;
        using var keyScope = key is null ? null : Crypto.ImageKeys.Use(new[] { key.Passphrase });

        // The new point's bitmap goes in before the source is read, so it marks every write made after the read.
        var (bitmap, addNote) = options.Force ? (null, "-Force: no dirty bitmap is added to an image another process may be writing")
            : BackupBitmaps.TryAdd(source, BackupBitmaps.NameFor(setId, time));
        BackupPointRecord? point = null;
        try
        {
            using (var input = OpenSource(source, options))
                point = WritePoint(set, input, last, kind, time, setId, bitmap, addNote, options, encryption, key, progress, cancel);
            return new BackupResult { SetPath = set.Folder, Point = point, Warnings = warnings.Messages };
        }
        finally
        {
            // Only the newest point's bitmap is kept; a failed backup takes its own away (the previous one still counts).
            if (point != null) BackupBitmaps.RemoveOthers(source, setId, keep: bitmap);
            else if (bitmap != null) BackupBitmaps.Remove(source, bitmap);
        }
    }

    private static BackupPointRecord WritePoint(BackupSet set, VirtualDisk input, BackupPointRecord? last, BackupKind kind, DateTimeOffset time,
        string setId, string? bitmap, string? addNote, BackupOptions options, BackupEncryption? encryption, BackupKey? key,
        IProgress<BackupProgress>? progress, CancellationToken cancel)
    {
        bool compress = options.Compress && key is null; // QEMU refuses compressed clusters in an encrypted image
        var previous = kind == BackupKind.Full ? new BlockHashTable() : set.HashesOf(last!);
        var detection = kind == BackupKind.Full ? ChangeDetection.Full : ChangeDetection.Hashes;
        IEnumerable<(long Offset, long Length)> regions = new[] { (0L, input.Length) };
        string? note = addNote;
        if (kind == BackupKind.Incremental && !options.Force)
        {
            var (dirty, why) = BackupBitmaps.DirtyRanges(input.Path, last!, input.Length);
            if (dirty != null) (detection, regions) = (ChangeDetection.Bitmap, dirty);
            else note = string.Join("; ", new[] { why, addNote }.Where(n => n != null));
        }

        string name = set.NewPointName(time, kind);
        string imagePath = set.PathOf(name + ".qcow2"), hashPath = set.PathOf(name + ".blockhashes");
        var plan = CreateImage.Plan(imagePath, new CreateOptions
        {
            Format = ImageFormat.Qcow2, Size = input.Length, ClusterSize = BlockHash.BlockSize, CompressionType = options.CompressionType,
            BackingPath = kind == BackupKind.Full ? null : set.PathOf(last!.File), BackingFormat = ImageFormat.Qcow2,
            Encryption = encryption?.PointOptions, Passphrase = key?.Passphrase,
        }, overwrite: false);
        string hashTemp = TemporaryOutputs.NameFor(hashPath);
        bool published = false;
        try
        {
            using var image = OutputFile.Begin(plan, overwrite: false);
            CreateImage.Write(plan, image.Temp, cancel);
            BackupCopier copier;
            using (var output = new VirtualDisk(image.Temp, ImageChain.OpenFile(image.Temp, ImageFormat.Qcow2, writable: true), null, writable: true))
            {
                copier = new BackupCopier(input, output, previous, compress, options.ThrottleLimit, progress, cancel, key?.HashKey);
                copier.Run(regions);
                output.Flush();
            }
            BlockHashFile.Write(hashTemp, copier.Entries);
            var point = new BackupPointRecord
            {
                Time = time, Kind = kind, File = Path.GetFileName(imagePath), Backing = kind == BackupKind.Full ? null : last!.File,
                FileChecksum = FileChecksums.Of(image.Temp), HashFile = Path.GetFileName(hashPath), HashFileChecksum = FileChecksums.Of(hashTemp),
                Source = IdentityOf(input), ChangeDetection = detection, ChangeDetectionNote = string.IsNullOrEmpty(note) ? null : note, Bitmap = bitmap,
                Compression = compress ? options.CompressionType.ToString() : "None", Encrypted = key != null,
                BytesRead = copier.BytesRead, ChangedBytes = copier.BytesChanged,
                StoredBytes = new FileInfo(image.Temp).Length + new FileInfo(hashTemp).Length,
            };
            cancel.ThrowIfCancellationRequested();
            published = true;
            image.Commit();
            File.Move(hashTemp, hashPath);
            HostFileSync.Directory(set.Folder);
            var manifest = set.Manifest ?? new BackupManifest
            {
                SetId = setId, Encryption = encryption, HashAlgorithm = encryption is null ? "SHA-256" : BackupManifest.KeyedHashAlgorithm,
            };
            set.Save(manifest with { Points = manifest.Points.Append(point).ToList() });
            published = false;
            return point;
        }
        catch (Exception e) when (CreateImage.WrapHostError(e, set.Folder) is var wrapped && wrapped != e)
        {
            throw wrapped;
        }
        finally
        {
            TryDelete(hashTemp);
            if (published) // renamed into place but not in the manifest: not a point
            {
                TryDelete(imagePath);
                TryDelete(hashPath);
            }
        }
    }

    // The set's encryption and key: a new set takes the options' settings; an encrypted set is unlocked with the
    // options' passphrase or the ones in scope; asking to encrypt into a set in clear is refused.
    private static (BackupEncryption? Record, BackupKey? Key) SetKey(BackupSet set, BackupOptions options)
    {
        if (set.Manifest?.Encryption is { } existing)
        {
            var candidates = (options.Passphrase is null ? Array.Empty<Crypto.Passphrase>() : new[] { options.Passphrase }).Concat(Crypto.ImageKeys.Current).ToList();
            return (existing, BackupKey.Unlock(existing, candidates, set.Folder));
        }
        if (options.Encryption is null) return (null, null);
        if (set.Manifest != null)
            throw VDiskException.Invalid(set.Folder, $"{set.Folder}: this backup set is not encrypted, and a set is encrypted from its first point on; back up into a new folder to start an encrypted set.");
        if (options.Passphrase is null)
            throw new VDiskException(VDiskErrorKind.PassphraseRequired, set.Folder, $"{set.Folder}: an encrypted backup set needs a passphrase.");
        return BackupKey.Create(options.Encryption, options.Passphrase);
    }

    private static VirtualDisk OpenSource(string source, BackupOptions options)
    {
        try
        {
            return ImageChain.Open(source, new OpenOptions { Format = options.SourceFormat, ForceShare = options.Force });
        }
        catch (VDiskException e) when (e.Kind == VDiskErrorKind.InUse)
        {
            throw new VDiskException(VDiskErrorKind.InUse, source,
                $"{e.Message} A backup read while a VM writes the image would not be consistent. For a running libvirt domain use " +
                "Backup-VDisk -Domain (an external snapshot, a backup of the now read-only image, then a commit back into it); " +
                "or use -Force to read it as it changes.", e);
        }
    }

    /// <summary>The source's identity: path, format, size, and a fingerprint of the fields that identify it.</summary>
    internal static BackupSourceIdentity IdentityOf(VirtualDisk input)
    {
        string identity = $"{FormatProbe.Name(input.Format)}\n{input.Length}\n{input.Driver.ClusterSize}\n{input.Backing?.Path}";
        return new BackupSourceIdentity
        {
            Path = input.Path, Format = FormatProbe.Name(input.Format), VirtualSize = input.Length,
            Fingerprint = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(identity))).ToLowerInvariant()[..16],
        };
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
