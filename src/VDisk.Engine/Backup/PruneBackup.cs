// Pruning a backup set (issue 11 "Restore, retention, verification": Remove-VDiskBackup). A retention policy
// (RetentionPolicy: restic's --keep-* rules) and/or explicit times say which points go; the newest point always
// stays. Removed points are merged into their neighbours so every kept point still restores to exactly its content
// and each incremental still names the previous point's image as its backing file:
// - a run of removed points followed, in the same chain, by a kept point K is merged into K: K is rewritten as a new
//   image over the kept point B before the run (or standalone when the run began with the chain's full backup, K
//   then becoming the full). The new image holds, for every block the run or K decides, what K reads through its
//   old chain where that differs from B (compressed like the set; zero clusters where K reads zeroes over B's data);
//   its block hash list is the union minus the blocks that read as B does. Every block's hash is checked against
//   the manifest's fold for K before anything is published, so a prune never carries damage into a kept point.
// - a run of removed points at the end of an (older) chain has no successor: its files are just deleted.
// Why new files rather than commit/rebase in place (CommitImage, RebaseImage): a point's image may not change while
// the manifest names it with its checksum, or Test-VDiskBackup could not tell damage from an interrupted prune; and
// a "commit into the full" would rewrite the full that other kept points read through. A rewritten point keeps its
// file names (the new image is renamed over the old), so the next point's backing name never changes and no other
// file is touched; a full made from an incremental keeps its "-inc" name (the manifest's Kind is the truth).
//
// Crash safety (power loss, kill -9, Ctrl+C at any moment). The manifest is the only truth and is replaced
// atomically (BackupManifest.Save). A prune has three phases:
//  1. New images and hash files are written and flushed under fresh point names the manifest does not name. A crash
//     here leaves the old manifest and untouched old files; the fresh files are leftovers the next writer removes.
//  2. One manifest write commits: the final points (rewritten points with their new checksums, removed points gone)
//     plus a pending list: "rename these new files over these point files, then delete these files".
//  3. The renames, a folder flush, the deletions, a folder flush, and the manifest without the pending list.
// In every state each point of the current manifest reads its exact content: renames replace a file with one that
// reads the same guest content over a chain that still exists (old files are deleted only after every rename is
// durable), and a pending manifest is finished (idempotently: a rename whose new file is gone is done) by the next
// writer before anything else, and by a reader before it reads (BackupSet.Pending.cs). So whenever the manifest has
// no pending list, every checksum it records matches the files, and Test-VDiskBackup is clean unless there is damage.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.Engine.Backup;

/// <summary>What a prune does with one point.</summary>
public enum PruneAction
{
    /// <summary>The point stays as it is.</summary>
    Keep,
    /// <summary>The point stays; its image is rewritten to absorb the removed points before it.</summary>
    Rewrite,
    /// <summary>The point goes (merged into the next kept point of its chain, or deleted when there is none).</summary>
    Remove,
}

/// <summary>The fate of one point in a prune.</summary>
public sealed record PruneDecision
{
    /// <summary>The point as the manifest recorded it before the prune.</summary>
    public required BackupPointRecord Point { get; init; }
    /// <summary>Keep, rewrite or remove.</summary>
    public required PruneAction Action { get; init; }
    /// <summary>Why it is kept (restic's reasons: "last", "daily", "oldest monthly", "newest"), or why it goes ("policy", "requested").</summary>
    public required IReadOnlyList<string> Reasons { get; init; }
    /// <summary>A removed point: the kept point its blocks are merged into (null: deleted, nothing after it needs them).</summary>
    public DateTimeOffset? MergedInto { get; init; }
    /// <summary>A rewritten point: the removed points merged into it, oldest first.</summary>
    public IReadOnlyList<DateTimeOffset> Absorbs { get; init; } = Array.Empty<DateTimeOffset>();
    /// <summary>A rewritten point: the kept point it will be an overlay on (null: it becomes a full backup).</summary>
    public string? NewBacking { get; init; }
}

/// <summary>How to prune a set.</summary>
public sealed record PruneOptions
{
    /// <summary>Which points to keep; null keeps every point not named in <see cref="Remove"/>.</summary>
    public RetentionPolicy? Policy { get; init; }
    /// <summary>Points to remove whatever the policy says, by time: exact, or to the second when given without fractions.</summary>
    public IReadOnlyList<DateTimeOffset> Remove { get; init; } = Array.Empty<DateTimeOffset>();
    /// <summary>The time zone whose calendar the policy's hours, days, weeks, months and years follow (null: this machine's).</summary>
    public TimeZoneInfo? TimeZone { get; init; }
    /// <summary>Wait for another command working on the set instead of failing.</summary>
    public bool Wait { get; init; }
    /// <summary>Worker threads for reading, hashing and compressing.</summary>
    public int ThrottleLimit { get; init; } = Environment.ProcessorCount;
}

/// <summary>What a prune did.</summary>
public sealed record PruneResult
{
    /// <summary>Full path of the set's folder.</summary>
    public required string SetPath { get; init; }
    /// <summary>Every point of the set before the prune, oldest first, with what was done with it.</summary>
    public required IReadOnlyList<PruneDecision> Decisions { get; init; }
    /// <summary>Bytes the set's files take less than before.</summary>
    public long BytesFreed { get; init; }
    /// <summary>Things the caller should be told (an interrupted prune finished, leftovers removed).</summary>
    public IReadOnlyList<string> Warnings { get; init; } = Array.Empty<string>();
}

/// <summary>Removes restore points from backup sets.</summary>
public static class PruneBackup
{
    /// <summary>
    /// What <see cref="Run"/> would do with each point of the set in <paramref name="setFolder"/>, oldest first, without
    /// changing anything (not even taking the lock): the -WhatIf of a prune.
    /// </summary>
    public static IReadOnlyList<PruneDecision> Plan(string setFolder, PruneOptions options)
    {
        string folder = Path.GetFullPath(setFolder);
        RequireSet(folder);
        return Decide(BackupManifest.Load(folder)!.Points, options, folder);
    }

    /// <summary>
    /// Prunes the set in <paramref name="setFolder"/>: finishes an interrupted prune first, then removes the points
    /// <paramref name="options"/> do not keep, merging them into the kept points after them. Errors: no rule and no
    /// time given, or the newest point named (<see cref="VDiskErrorKind.InvalidArgument"/>); a time no point has
    /// (<see cref="VDiskErrorKind.BackupPointNotFound"/>); a block that does not read as the manifest says
    /// (<see cref="VDiskErrorKind.Corrupt"/>, nothing changed); the set in use (<see cref="VDiskErrorKind.InUse"/>).
    /// </summary>
    public static PruneResult Run(string setFolder, PruneOptions options, IProgress<OperationProgress>? progress = null, CancellationToken cancel = default)
    {
        string folder = Path.GetFullPath(setFolder);
        RequireSet(folder);
        if (options.ThrottleLimit < 1) throw VDiskException.Invalid(folder, $"Throttle limit {options.ThrottleLimit} is invalid: use 1 or more workers.");
        using var warnings = OperationWarnings.Collect();
        using var set = BackupSet.OpenForWriting(folder, options.Wait, cancel);
        var decisions = Decide(set.Points, options, folder);
        if (decisions.All(d => d.Action == PruneAction.Keep))
            return new PruneResult { SetPath = folder, Decisions = decisions, Warnings = warnings.Messages };

        long before = set.Points.Sum(p => p.StoredBytes);
        var fresh = new List<string>();
        var pending = new BackupPendingPrune();
        bool committed = false;
        try
        {
            var rewritten = new Dictionary<string, BackupPointRecord>(StringComparer.Ordinal);
            var rewrites = decisions.Where(d => d.Action == PruneAction.Rewrite).ToList();
            using var key = rewrites.Count > 0 ? set.UnlockKey() : null; // rewriting an encrypted set's points needs its passphrase
            long total = rewrites.Sum(d => d.Point.Source.VirtualSize), done = 0;
            foreach (var decision in rewrites)
            {
                var meter = progress is null ? null : new Offset(progress, done, total);
                var merged = PointMerger.Merge(set, decision, key, options.ThrottleLimit, meter, cancel);
                fresh.Add(merged.Image);
                fresh.Add(merged.HashFile);
                pending.Renames.Add(new BackupRename(merged.Image, decision.Point.File));
                pending.Renames.Add(new BackupRename(merged.HashFile, decision.Point.HashFile));
                rewritten[decision.Point.File] = merged.Record;
                done += decision.Point.Source.VirtualSize;
            }
            foreach (var removed in decisions.Where(d => d.Action == PruneAction.Remove))
                pending.Deletes.AddRange(new[] { removed.Point.File, removed.Point.HashFile });
            var points = decisions.Where(d => d.Action != PruneAction.Remove)
                .Select(d => rewritten.GetValueOrDefault(d.Point.File) ?? d.Point).ToList();
            cancel.ThrowIfCancellationRequested();
            set.Save(set.Manifest! with { Points = points, Pending = pending });
            committed = true;
            BackupSet.Step("manifest saved with the pending prune");
        }
        finally
        {
            if (!committed)
                foreach (string name in fresh) CreateImage.TryDelete(set.PathOf(name));
        }
        set.FinishPending(interrupted: false); // no cancellation from here on: a few renames and deletions
        return new PruneResult
        {
            SetPath = folder, Decisions = decisions, Warnings = warnings.Messages,
            BytesFreed = before - set.Points.Sum(p => p.StoredBytes),
        };
    }

    /// <summary>The fate of each of <paramref name="points"/> (oldest first) under <paramref name="options"/>.</summary>
    public static IReadOnlyList<PruneDecision> Decide(IReadOnlyList<BackupPointRecord> points, PruneOptions options, string setFolder)
    {
        bool hasPolicy = options.Policy is { IsEmpty: false };
        if (!hasPolicy && options.Remove.Count == 0)
            throw VDiskException.Invalid(setFolder, $"{setFolder}: say which points to keep (KeepLast, KeepHourly, KeepDaily, KeepWeekly, KeepMonthly or KeepYearly) " +
                "or which to remove; a prune with no rule removes nothing.");
        var reasons = hasPolicy
            ? options.Policy!.Apply(points.Select(p => p.Time).ToList(), options.TimeZone ?? TimeZoneInfo.Local)
            : points.Select(_ => (IReadOnlyList<string>)Array.Empty<string>()).ToList();
        var requested = new bool[points.Count];
        foreach (var time in options.Remove)
        {
            int at = Enumerable.Range(0, points.Count).FirstOrDefault(i => Matches(points[i].Time, time), -1);
            if (at < 0)
                throw new VDiskException(VDiskErrorKind.BackupPointNotFound, setFolder, $"{setFolder} has no restore point taken at {time:u}.");
            if (at == points.Count - 1)
                throw VDiskException.Invalid(setFolder, $"{setFolder}: the point of {time:u} is the newest; a prune always keeps the newest point.");
            requested[at] = true;
        }

        var decisions = new PruneDecision[points.Count];
        var run = new List<int>();
        int keptBefore = -1;
        for (int i = 0; i < points.Count; i++)
        {
            if (points[i].Kind == BackupKind.Full)
            {
                EndRun(points, decisions, run, requested, mergedInto: null);
                keptBefore = -1;
            }
            bool newest = i == points.Count - 1;
            bool keep = newest || (!requested[i] && (!hasPolicy || reasons[i].Count > 0));
            if (!keep)
            {
                run.Add(i);
                continue;
            }
            var why = reasons[i].Count > 0 ? reasons[i] : new[] { newest ? "newest" : "not named" };
            decisions[i] = run.Count == 0
                ? new PruneDecision { Point = points[i], Action = PruneAction.Keep, Reasons = why }
                : new PruneDecision
                {
                    Point = points[i], Action = PruneAction.Rewrite, Reasons = why, Absorbs = run.Select(r => points[r].Time).ToList(),
                    NewBacking = keptBefore < 0 ? null : points[keptBefore].File,
                };
            EndRun(points, decisions, run, requested, mergedInto: points[i].Time);
            keptBefore = i;
        }
        EndRun(points, decisions, run, requested, mergedInto: null);
        return decisions;
    }

    private static void EndRun(IReadOnlyList<BackupPointRecord> points, PruneDecision[] decisions, List<int> run, bool[] requested, DateTimeOffset? mergedInto)
    {
        foreach (int r in run)
            decisions[r] = new PruneDecision
            {
                Point = points[r], Action = PruneAction.Remove, MergedInto = mergedInto,
                Reasons = new[] { requested[r] ? "requested" : "policy" },
            };
        run.Clear();
    }

    // Exact, or to the second when the time asked for has no fraction of a second (as typed or printed).
    private static bool Matches(DateTimeOffset point, DateTimeOffset asked) =>
        point == asked || (asked.Ticks % TimeSpan.TicksPerSecond == 0 && point.UtcTicks / TimeSpan.TicksPerSecond == asked.UtcTicks / TimeSpan.TicksPerSecond);

    private static void RequireSet(string folder)
    {
        if (!BackupSet.IsSet(folder))
            throw new VDiskException(VDiskErrorKind.NotFound, folder, $"{folder} is not a backup set (it holds no {BackupManifest.FileName}).");
    }

    // One rewrite's share of the prune's progress.
    private sealed class Offset(IProgress<OperationProgress> target, long before, long total) : IProgress<BackupProgress>
    {
        public void Report(BackupProgress value) => target.Report(new OperationProgress(before + value.BytesDone, total));
    }
}
