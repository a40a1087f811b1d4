// What Test-VDiskBackup writes: the result of re-reading one restore point (or the manifest, when it is damaged).
using VDisk.Engine.Backup;

namespace VDisk.PowerShell;

/// <summary>The check of one restore point.</summary>
public sealed class VDiskBackupCheck
{
    /// <summary>Full path of the backup set's folder.</summary>
    public string SetPath { get; init; } = string.Empty;

    /// <summary>The point's time in local time; null when the manifest itself is damaged.</summary>
    public DateTime? Time { get; init; }

    /// <summary>Full or Incremental; null when the manifest itself is damaged.</summary>
    public BackupKind? Kind { get; init; }

    /// <summary>Full path of the point's image, or of the manifest when it is the manifest that is damaged.</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>True when every file of the point is as written and every block reads as recorded.</summary>
    public bool Intact { get; init; }

    /// <summary>Blocks read and compared with their recorded hashes.</summary>
    public long BlocksChecked { get; init; }

    /// <summary>Guest offsets of the damaged blocks found.</summary>
    public long[] DamagedOffsets { get; init; } = Array.Empty<long>();

    /// <summary>What is wrong, one line per problem.</summary>
    public string[] Problems { get; init; } = Array.Empty<string>();

    internal static VDiskBackupCheck From(string setPath, BackupPointCheck c) => new()
    {
        SetPath = setPath,
        Time = c.Point?.Time.LocalDateTime,
        Kind = c.Point?.Kind,
        Path = c.Point is null ? (c.Problems.FirstOrDefault()?.File ?? setPath) : System.IO.Path.Combine(setPath, c.Point.File),
        Intact = c.Problems.Count == 0,
        BlocksChecked = c.BlocksChecked,
        DamagedOffsets = c.Problems.Where(p => p.GuestOffset.HasValue).Select(p => p.GuestOffset!.Value).Distinct().ToArray(),
        Problems = c.Problems.Select(p => p.Message).ToArray(),
    };
}
