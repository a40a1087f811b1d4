// Retention rules against restic's documented examples and behaviour (doc/060_forget.rst "Removing snapshots
// according to a policy", and its ApplyPolicy: newest first, one point per bucket, the oldest point kept while a
// rule has count left), with fixed times and an explicit time zone so the machine's zone never matters; and the
// prune's decisions over chains (which points are rewritten, merged or deleted).
using VDisk.Engine.Backup;
using VDisk.Engine.Core;

namespace VDisk.Engine.Tests.Backup;

public class RetentionPolicyTests
{
    private static readonly TimeZoneInfo Utc = TimeZoneInfo.Utc;

    private static List<DateTimeOffset> Kept(RetentionPolicy policy, IReadOnlyList<DateTimeOffset> times, TimeZoneInfo? zone = null)
    {
        var reasons = policy.Apply(times, zone ?? Utc);
        return times.Where((_, i) => reasons[i].Count > 0).ToList();
    }

    private static DateTimeOffset T(string utc) => DateTimeOffset.Parse(utc + "Z", System.Globalization.CultureInfo.InvariantCulture);

    [Fact]
    public void KeepDailyFourOfTwelveSundaysKeepsTheLastFourAsResticsDocumentedExample()
    {
        var sundays = Enumerable.Range(0, 12).Select(w => T("2019-09-01T11:00:00").AddDays(7 * w)).ToList();
        var reasons = new RetentionPolicy { KeepDaily = 4 }.Apply(sundays, Utc);
        Assert.Equal(sundays.Skip(8), sundays.Where((_, i) => reasons[i].Count > 0));
        Assert.All(reasons.Skip(8), r => Assert.Equal(new[] { "daily" }, r));
    }

    [Fact]
    public void KeepLastKeepsTheNewestAndRulesAreOred()
    {
        var times = Enumerable.Range(0, 10).Select(i => T("2026-03-01T03:00:00").AddDays(i)).ToList();
        Assert.Equal(times.Skip(7), Kept(new RetentionPolicy { KeepLast = 3 }, times));
        var reasons = new RetentionPolicy { KeepLast = 1, KeepDaily = 2 }.Apply(times, Utc);
        Assert.Equal(new[] { "last", "daily" }, reasons[9]);
        Assert.Equal(new[] { "daily" }, reasons[8]);
        Assert.All(reasons.Take(8), r => Assert.Empty(r));
    }

    [Fact]
    public void DailyWeeklyMonthlyYearlyOverThreeYearsOfDailyPointsKeepExactlyTheDocumentedShape()
    {
        // restic: one backup a day; --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 3 keeps the 7 newest
        // days, then the last point of the 4 weeks before (5 with the newest week, already kept), the last day of the
        // 11 months before (12 with this month), and the last day of the 2 years before.
        var times = new List<DateTimeOffset>();
        for (var t = T("2020-01-01T12:00:00"); t <= T("2022-12-31T12:00:00"); t = t.AddDays(1)) times.Add(t);
        var kept = Kept(new RetentionPolicy { KeepDaily = 7, KeepWeekly = 5, KeepMonthly = 12, KeepYearly = 3 }, times);

        var expected = new List<DateTimeOffset>();
        expected.AddRange(Enumerable.Range(25, 7).Select(d => T($"2022-12-{d:00}T12:00:00")));                    // daily
        expected.AddRange(new[] { 4, 11, 18 }.Select(d => T($"2022-12-{d:00}T12:00:00")));                        // weekly: Sundays (Dec 25 is daily)
        expected.AddRange(Enumerable.Range(1, 11).Select(m => T($"2022-{m:00}-{DateTime.DaysInMonth(2022, m):00}T12:00:00"))); // monthly
        expected.AddRange(new[] { T("2020-12-31T12:00:00"), T("2021-12-31T12:00:00") });                         // yearly
        Assert.Equal(expected.Order(), kept);
        Assert.Equal(23, kept.Count);
    }

    [Fact]
    public void WeeksAreIsoWeeksFromMondayToSunday()
    {
        // Sunday 2026-03-08 23:00 and Monday 2026-03-09 01:00 are in different weeks; the Monday and Friday in the same.
        var times = new[] { T("2026-03-06T10:00:00"), T("2026-03-08T23:00:00"), T("2026-03-09T01:00:00"), T("2026-03-13T10:00:00") };
        Assert.Equal(new[] { times[1], times[3] }, Kept(new RetentionPolicy { KeepWeekly = 2 }, times));
        // ISO week 1 of 2027 starts on Monday 2027-01-04: Sunday 2027-01-03 still belongs to week 53 of 2026.
        var turn = new[] { T("2026-12-28T10:00:00"), T("2027-01-03T10:00:00"), T("2027-01-04T10:00:00") };
        Assert.Equal(new[] { turn[1], turn[2] }, Kept(new RetentionPolicy { KeepWeekly = 2 }, turn));
    }

    [Fact]
    public void TheOldestPointIsKeptWhileARuleHasCountLeft()
    {
        // Three months of points, 12 monthly wanted: each month's newest, and the oldest point as "oldest monthly".
        var times = new[] { T("2026-01-03T03:00:00"), T("2026-01-20T03:00:00"), T("2026-02-14T03:00:00"), T("2026-03-01T03:00:00"), T("2026-03-02T03:00:00") };
        var reasons = new RetentionPolicy { KeepMonthly = 12 }.Apply(times, Utc);
        Assert.Equal(new[] { "oldest monthly" }, reasons[0]);
        Assert.Equal(new[] { "monthly" }, reasons[1]);
        Assert.Equal(new[] { "monthly" }, reasons[2]);
        Assert.Empty(reasons[3]);
        Assert.Equal(new[] { "monthly" }, reasons[4]);
        // With the count used up, the oldest goes.
        Assert.Equal(new[] { times[4] }, Kept(new RetentionPolicy { KeepMonthly = 1 }, times));
    }

    [Fact]
    public void UnlimitedKeepsTheNewestOfEveryBucket()
    {
        var times = new[] { T("2026-03-01T01:00:00"), T("2026-03-01T05:00:00"), T("2026-03-02T01:00:00"), T("2026-03-02T05:00:00"), T("2026-03-03T05:00:00") };
        Assert.Equal(new[] { times[0], times[1], times[3], times[4] }, Kept(new RetentionPolicy { KeepDaily = -1 }, times)); // and the oldest, as restic
        Assert.Equal(times, Kept(new RetentionPolicy { KeepHourly = -1 }, times));
        Assert.Throws<ArgumentOutOfRangeException>(() => new RetentionPolicy { KeepDaily = -2 }.Apply(times, Utc));
    }

    [Fact]
    public void DaysFollowTheGivenTimeZoneNotTheMachines()
    {
        var times = new[] { T("2026-11-01T12:00:00"), T("2026-11-01T23:30:00"), T("2026-11-02T00:30:00") };
        var policy = new RetentionPolicy { KeepDaily = 2 };
        Assert.Equal(new[] { times[1], times[2] }, Kept(policy, times, Utc));
        var plusTwo = TimeZoneInfo.CreateCustomTimeZone("UTC+2", TimeSpan.FromHours(2), "UTC+2", "UTC+2");
        Assert.Equal(new[] { times[0], times[2] }, Kept(policy, times, plusTwo)); // 01:30 and 02:30 on Nov 2 there
        var minusTwo = TimeZoneInfo.CreateCustomTimeZone("UTC-2", TimeSpan.FromHours(-2), "UTC-2", "UTC-2");
        Assert.Equal(new[] { times[2] }, Kept(new RetentionPolicy { KeepDaily = 1 }, times, minusTwo));
    }

    // Decisions over chains: full F0 with incrementals 1-3, full F4 with incrementals 5-7.
    private static List<BackupPointRecord> Points()
    {
        var points = new List<BackupPointRecord>();
        for (int i = 0; i < 8; i++)
        {
            bool full = i % 4 == 0;
            points.Add(new BackupPointRecord
            {
                Time = T("2026-03-01T03:00:00").AddDays(i), Kind = full ? BackupKind.Full : BackupKind.Incremental,
                File = $"p{i}.qcow2", Backing = full ? null : $"p{i - 1}.qcow2", FileChecksum = "", HashFile = $"p{i}.blockhashes", HashFileChecksum = "",
                Source = new BackupSourceIdentity { Path = "/vm", Format = "raw", VirtualSize = 1 << 20, Fingerprint = "" },
                ChangeDetection = full ? ChangeDetection.Full : ChangeDetection.Hashes, Compression = "Zlib",
            });
        }
        return points;
    }

    [Fact]
    public void RemovedPointsMergeIntoTheNextKeptPointOfTheirChainOrAreDeleted()
    {
        var points = Points();
        // Keep p1, p2 (explicit removal of p0, p3, p5, p6): p1 becomes the full, p3 (end of chain 1) is deleted,
        // p7 absorbs p5 and p6 over p4.
        var decisions = PruneBackup.Decide(points, new PruneOptions { Remove = new[] { 0, 3, 5, 6 }.Select(i => points[i].Time).ToList() }, "/set");
        Assert.Equal(new[] { PruneAction.Remove, PruneAction.Rewrite, PruneAction.Keep, PruneAction.Remove, PruneAction.Keep, PruneAction.Remove, PruneAction.Remove, PruneAction.Rewrite },
            decisions.Select(d => d.Action));
        Assert.Equal(points[1].Time, decisions[0].MergedInto);
        Assert.Null(decisions[1].NewBacking);
        Assert.Null(decisions[3].MergedInto);
        Assert.Equal("p4.qcow2", decisions[7].NewBacking);
        Assert.Equal(new[] { points[5].Time, points[6].Time }, decisions[7].Absorbs);
        Assert.Equal(new[] { "requested" }, decisions[5].Reasons);
    }

    [Fact]
    public void TheNewestPointIsAlwaysKeptAndAPruneNeedsARule()
    {
        var points = Points();
        var decisions = PruneBackup.Decide(points, new PruneOptions { Policy = new RetentionPolicy { KeepLast = 1 } }, "/set");
        Assert.Equal(PruneAction.Rewrite, decisions[7].Action); // absorbs p4-p6 and becomes the full of its chain
        Assert.Null(decisions[7].NewBacking);
        Assert.All(decisions.Take(4), d => Assert.Null(d.MergedInto)); // chain 1 is deleted whole
        Assert.Equal(VDiskErrorKind.InvalidArgument, Assert.Throws<VDiskException>(() => PruneBackup.Decide(points, new PruneOptions(), "/set")).Kind);
        Assert.Equal(VDiskErrorKind.InvalidArgument, Assert.Throws<VDiskException>(() =>
            PruneBackup.Decide(points, new PruneOptions { Remove = new[] { points[7].Time } }, "/set")).Kind);
        Assert.Equal(VDiskErrorKind.BackupPointNotFound, Assert.Throws<VDiskException>(() =>
            PruneBackup.Decide(points, new PruneOptions { Remove = new[] { points[2].Time.AddMinutes(1) } }, "/set")).Kind);
        var bySecond = points[2].Time.AddTicks(1234); // a point taken with fractions is named by its whole second
        points[2] = points[2] with { Time = bySecond };
        Assert.Equal(PruneAction.Remove, PruneBackup.Decide(points, new PruneOptions { Remove = new[] { T("2026-03-03T03:00:00") } }, "/set")[2].Action);
    }
}
