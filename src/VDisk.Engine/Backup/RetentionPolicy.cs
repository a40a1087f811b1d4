// Which restore points a prune keeps (issue 11 "Restore, retention, verification"): restic's `forget --keep-*`
// rules, with restic's exact meaning. Points are walked newest first. --keep-last n keeps the n newest; for each
// calendar rule (hourly, daily, weekly, monthly, yearly) with n, the n most recent hours/days/weeks/months/years that
// hold one or more points each keep their newest point; while a rule still has count left when the walk reaches the
// oldest point, that point is kept too ("oldest daily", as restic marks it: the longest history the counts allow).
// A point kept by any rule is kept; -1 means unlimited, 0 (the default) leaves a rule off. Weeks are ISO weeks
// (Monday 00:00 to Sunday 23:59, the year of an ISO week can differ from the calendar year), as restic's Go code
// buckets them with time.ISOWeek.
// Time zone: points are stored in UTC; calendar buckets need a local calendar. restic uses the zone each snapshot was
// taken in, which a VDisk manifest does not record, so the caller names one: by default the zone of the machine that
// prunes (TimeZoneInfo.Local, what a nightly job on the backup host means by "a day"), or any TimeZoneInfo given.
// Two prunes of one set with different zones may keep different points around midnight; tests pass a zone.
namespace VDisk.Engine.Backup;

/// <summary>A retention policy: restic's <c>--keep-*</c> options. 0 leaves a rule off; -1 keeps all of its kind.</summary>
public sealed record RetentionPolicy
{
    /// <summary>Keep the n newest points.</summary>
    public int KeepLast { get; init; }
    /// <summary>For the last n hours that have points, keep the newest point of each.</summary>
    public int KeepHourly { get; init; }
    /// <summary>For the last n days that have points, keep the newest point of each.</summary>
    public int KeepDaily { get; init; }
    /// <summary>For the last n ISO weeks (Monday to Sunday) that have points, keep the newest point of each.</summary>
    public int KeepWeekly { get; init; }
    /// <summary>For the last n months that have points, keep the newest point of each.</summary>
    public int KeepMonthly { get; init; }
    /// <summary>For the last n years that have points, keep the newest point of each.</summary>
    public int KeepYearly { get; init; }

    /// <summary>True when no rule is set (restic refuses to act on such a policy, and so does a prune).</summary>
    public bool IsEmpty => Rules.All(r => r.Count == 0);

    /// <summary>The rules in restic's order, with the names restic gives its reasons.</summary>
    private IEnumerable<(int Count, string Reason, Func<DateTime, int, long> Bucket)> Rules => new (int, string, Func<DateTime, int, long>)[]
    {
        (KeepLast, "last", (_, nr) => nr),
        (KeepHourly, "hourly", (t, _) => ((t.Year * 100L + t.Month) * 100 + t.Day) * 100 + t.Hour),
        (KeepDaily, "daily", (t, _) => (t.Year * 100L + t.Month) * 100 + t.Day),
        (KeepWeekly, "weekly", (t, _) => System.Globalization.ISOWeek.GetYear(t) * 100L + System.Globalization.ISOWeek.GetWeekOfYear(t)),
        (KeepMonthly, "monthly", (t, _) => t.Year * 100L + t.Month),
        (KeepYearly, "yearly", (t, _) => t.Year),
    };

    /// <summary>Checks every count (-1 or more); a bad one is an <see cref="ArgumentOutOfRangeException"/>.</summary>
    public void Validate()
    {
        foreach (var (count, reason, _) in Rules)
            if (count < -1) throw new ArgumentOutOfRangeException(nameof(count), count, $"keep-{reason} must be 0 (off), a positive count, or -1 (unlimited).");
    }

    /// <summary>
    /// Why each point is kept: for <paramref name="times"/> (any order), the reasons in the same order, e.g.
    /// ["daily", "weekly"] or ["oldest monthly"]; an empty list means the policy does not keep that point.
    /// Calendar buckets are taken in <paramref name="zone"/>.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<string>> Apply(IReadOnlyList<DateTimeOffset> times, TimeZoneInfo zone)
    {
        Validate();
        var rules = Rules.Select(r => (Left: r.Count, r.Reason, r.Bucket, Last: (long?)null)).ToArray();
        var reasons = times.Select(_ => new List<string>()).ToArray();
        var newestFirst = Enumerable.Range(0, times.Count).OrderByDescending(i => times[i]).ToArray();
        for (int nr = 0; nr < newestFirst.Length; nr++)
        {
            int at = newestFirst[nr];
            var local = TimeZoneInfo.ConvertTime(times[at], zone).DateTime;
            for (int r = 0; r < rules.Length; r++)
            {
                ref var rule = ref rules[r];
                if (rule.Left == 0) continue;
                long bucket = rule.Bucket(local, nr);
                bool oldest = nr == newestFirst.Length - 1;
                if (bucket == rule.Last && !oldest) continue;
                reasons[at].Add(bucket == rule.Last ? "oldest " + rule.Reason : rule.Reason);
                rule.Last = bucket;
                if (rule.Left > 0) rule.Left--;
            }
        }
        return reasons;
    }
}
