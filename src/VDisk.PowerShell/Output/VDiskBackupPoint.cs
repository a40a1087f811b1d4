// What Backup-VDisk and Get-VDiskBackup write: one restore point of a backup set. It carries Path (the point's
// image) and Time, so it binds by property name into Restore-VDiskBackup (and anything that takes image paths).
using VDisk.Engine.Backup;

namespace VDisk.PowerShell;

/// <summary>One restore point of a backup set.</summary>
public sealed class VDiskBackupPoint
{
    /// <summary>Full path of the backup set's folder.</summary>
    public string SetPath { get; init; } = string.Empty;

    /// <summary>When the source was read, in local time.</summary>
    public DateTime Time { get; init; }

    /// <summary>Full or Incremental.</summary>
    public BackupKind Kind { get; init; }

    /// <summary>Guest bytes that differ from the previous point (whole 64 KiB blocks; all the data for a full backup).</summary>
    public long ChangedBytes { get; init; }

    /// <summary>Bytes the point takes in the set (its image and its block hash file).</summary>
    public long StoredBytes { get; init; }

    /// <summary>Full path of the point's qcow2 image (readable by qemu-img through its backing chain).</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>When Test-VDiskBackup last found the point intact, in local time; null if it has not checked it.</summary>
    public DateTime? Verified { get; init; }

    /// <summary>How the changed blocks were found: Full, Bitmap or Hashes.</summary>
    public ChangeDetection ChangeDetection { get; init; }

    /// <summary>Why a dirty bitmap could not be used, when it could not.</summary>
    public string? ChangeDetectionNote { get; init; }

    /// <summary>The dirty bitmap this point added to a qcow2 source, which the next backup reads; null when none could be.</summary>
    public string? Bitmap { get; init; }

    /// <summary>Guest bytes read from the source.</summary>
    public long BytesRead { get; init; }

    /// <summary>The source image backed up.</summary>
    public string SourcePath { get; init; } = string.Empty;

    /// <summary>The source's virtual size in bytes at the time.</summary>
    public long VirtualSize { get; init; }

    /// <summary>Zlib, Zstd or None.</summary>
    public string Compression { get; init; } = string.Empty;

    /// <summary>True when the point's image is LUKS-encrypted with the set's passphrase.</summary>
    public bool Encrypted { get; init; }

    internal static VDiskBackupPoint From(string setPath, BackupPointRecord p) => new()
    {
        SetPath = setPath,
        Time = p.Time.LocalDateTime,
        Kind = p.Kind,
        ChangedBytes = p.ChangedBytes,
        StoredBytes = p.StoredBytes,
        Path = System.IO.Path.Combine(setPath, p.File),
        Verified = p.Verified?.LocalDateTime,
        ChangeDetection = p.ChangeDetection,
        ChangeDetectionNote = p.ChangeDetectionNote,
        Bitmap = p.Bitmap,
        BytesRead = p.BytesRead,
        SourcePath = p.Source.Path,
        VirtualSize = p.Source.VirtualSize,
        Compression = p.Compression,
        Encrypted = p.Encrypted,
    };
}
