// What Remove-VDiskBackup writes: one restore point of a backup set and what the prune did with it (deleted, merged
// into a later point, rewritten to absorb removed points, or kept), with restic's reasons for keeping it.
using VDisk.Engine.Backup;

namespace VDisk.PowerShell;

/// <summary>One point of a pruned backup set and its fate.</summary>
public sealed class VDiskBackupPrune
{
    /// <summary>Full path of the backup set's folder.</summary>
    public string SetPath { get; init; } = string.Empty;

    /// <summary>When the point was taken, in local time.</summary>
    public DateTime Time { get; init; }

    /// <summary>Full or Incremental, as the point was before the prune.</summary>
    public string Kind { get; init; } = string.Empty;

    /// <summary>Full path of the point's image.</summary>
    public string File { get; init; } = string.Empty;

    /// <summary>Deleted (nothing later needed it), Merged (its blocks went into MergedInto), Rewritten (kept, absorbed removed points) or Kept.</summary>
    public string Action { get; init; } = string.Empty;

    /// <summary>For a merged point, the time (local) of the kept point that now holds its blocks.</summary>
    public DateTime? MergedInto { get; init; }

    /// <summary>Why the point was kept ("daily", "oldest monthly", "last", "newest") or removed ("policy", "requested").</summary>
    public string Reason { get; init; } = string.Empty;

    internal static VDiskBackupPrune From(string setPath, PruneDecision d) => new()
    {
        SetPath = setPath,
        Time = d.Point.Time.LocalDateTime,
        Kind = d.Point.Kind.ToString(),
        File = System.IO.Path.Combine(setPath, d.Point.File),
        Action = d.Action switch
        {
            PruneAction.Remove => d.MergedInto is null ? "Deleted" : "Merged",
            PruneAction.Rewrite => "Rewritten",
            _ => "Kept",
        },
        MergedInto = d.MergedInto?.LocalDateTime,
        Reason = string.Join(", ", d.Reasons),
    };
}
