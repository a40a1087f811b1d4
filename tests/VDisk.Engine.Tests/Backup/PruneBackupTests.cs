// Pruning a real set (issue 11 "Proof": prune keeps exactly the points restic's rules keep, all restorable): ten
// points over three months in two chains (PruneSets), pruned with several policies; exactly the expected points
// stay, each restores to the content the source had then, every file passes qemu-img check, Test-VDiskBackup is
// clean, nothing else is left in the folder, and the next backup goes on from the pruned set.
using VDisk.Engine.Backup;
using VDisk.Engine.Core;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Backup;

public class PruneBackupTests
{
    private static readonly DateTimeOffset[] T = PruneSets.Times;

    public static TheoryData<string, int[]> Policies => new()
    {
        { "daily3", new[] { 7, 8, 9 } },            // chain 1 deleted; 7 absorbs 4-6 and becomes the full
        { "last2monthly3", new[] { 1, 3, 8, 9 } },  // 1 becomes the full (absorbs 0); 3 absorbs 2 over 1; 8 absorbs 4-7 as a full
        { "weekly2", new[] { 4, 9 } },              // ISO weeks 11 and 10: 9 absorbs 5-8 over 4
        { "remove2and6", new[] { 0, 1, 3, 4, 5, 7, 8, 9 } },
        { "monthly2yearly1", new[] { 3, 9 } },
    };

    private static PruneOptions Options(string policy) => new()
    {
        TimeZone = TimeZoneInfo.Utc, ThrottleLimit = 2,
        Policy = policy switch
        {
            "daily3" => new RetentionPolicy { KeepDaily = 3 },
            "last2monthly3" => new RetentionPolicy { KeepLast = 2, KeepMonthly = 3 },
            "weekly2" => new RetentionPolicy { KeepWeekly = 2 },
            "monthly2yearly1" => new RetentionPolicy { KeepMonthly = 2, KeepYearly = 1 },
            _ => null,
        },
        Remove = policy == "remove2and6" ? new[] { T[2], T[6] } : Array.Empty<DateTimeOffset>(),
    };

    private static (DateTimeOffset, PruneAction, DateTimeOffset?, string?) Summary(PruneDecision d) => (d.Point.Time, d.Action, d.MergedInto, d.NewBacking);

    [SkippableTheory]
    [MemberData(nameof(Policies))]
    public void APruneKeepsExactlyThePolicysPointsAndEachRestoresToItsContent(string policy, int[] kept)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (set, expected) = PruneSets.Copy(dir);
        var planned = PruneBackup.Plan(set, Options(policy));
        Assert.Equal(kept.Select(i => T[i]), planned.Where(d => d.Action != PruneAction.Remove).Select(d => d.Point.Time));

        var result = PruneBackup.Run(set, Options(policy));

        Assert.Equal(planned.Select(Summary), result.Decisions.Select(Summary));
        Assert.True(result.BytesFreed > 0);
        PruneSets.AssertPruned(set, expected, kept.Select(i => T[i]));
        if (Options(policy).Policy is { } rules) // a second prune by the policy has nothing to do; a removed time is no longer there
            Assert.All(PruneBackup.Run(set, new PruneOptions { Policy = rules, TimeZone = TimeZoneInfo.Utc }).Decisions, d => Assert.Equal(PruneAction.Keep, d.Action));
        else
            Assert.Equal(VDiskErrorKind.BackupPointNotFound, Assert.Throws<VDiskException>(() => PruneBackup.Run(set, Options(policy))).Kind);
    }

    [SkippableFact]
    public void AFullMadeFromAnIncrementAndTheRewrittenIncrementStoreOnlyWhatTheyNeed()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (set, _) = PruneSets.Copy(dir);
        var before = BackupManifest.Load(set)!.Points;
        HashSet<long> union;
        using (var original = BackupSet.OpenForReading(set, wait: false, default))
            union = before.Skip(2).Take(2).SelectMany(original.ReadHashes).Select(e => e.Block).ToHashSet();
        PruneBackup.Run(set, Options("last2monthly3"));
        var after = BackupManifest.Load(set)!.Points;

        Assert.Equal(BackupKind.Full, after[0].Kind);                    // point 1, was an increment over the full 0
        Assert.Equal(before[1].File, after[0].File);                     // same file names: the next point's backing name holds
        Assert.Equal(BackupKind.Incremental, after[1].Kind);             // point 3 over point 1
        Assert.Equal(after[0].File, after[1].Backing);
        Assert.Equal(BackupKind.Full, after[2].Kind);                    // point 8 absorbed the full 4 and 5-7
        Assert.Equal(before[9].FileChecksum, after[3].FileChecksum);         // point 9 untouched
        using var opened = BackupSet.OpenForReading(set, wait: false, default);
        // Point 3 holds at most the blocks points 2 and 3 decided (the union), of which only those differing from 1.
        var rewritten = opened.ReadHashes(after[1]).Select(e => e.Block).ToHashSet();
        Assert.Subset(union, rewritten);
        Assert.NotEmpty(rewritten);
    }

    [SkippableFact]
    public void TheNextBackupGoesOnFromAPrunedSet()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (set, expected) = PruneSets.Copy(dir);
        PruneBackup.Run(set, Options("weekly2"));
        string source = dir.File("vm.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", source, PruneSets.Size.ToString());
        RestoreBackup.Run(set, dir.File("vm.raw"), new RestoreOptions { DestinationFormat = ImageFormat.Raw });
        Qemu.Img("convert", "-O", "qcow2", dir.File("vm.raw"), source + ".tmp");
        File.Move(source + ".tmp", source, overwrite: true);
        ChainImages.Scatter(source, "qcow2", seed: 99, writes: 5, PruneSets.Size, zeroes: true);
        var time = T[9].AddDays(1);
        expected[time] = ChainImages.Sha(source);

        var next = BackupImage.Run(source, set, new BackupOptions { Time = time });

        Assert.Equal(BackupKind.Incremental, next.Point.Kind);
        Assert.True(next.Point.ChangedBytes <= 7 * 2 * 65536, $"changed {next.Point.ChangedBytes}");
        PruneSets.AssertPruned(set, expected, new[] { T[4], T[9], time });
    }

    [Fact]
    public void APruneOfAFolderThatIsNotASetIsNotFound()
    {
        using var dir = new TempFolder();
        var options = new PruneOptions { Policy = new RetentionPolicy { KeepLast = 1 } };
        Assert.Equal(VDiskErrorKind.NotFound, Assert.Throws<VDiskException>(() => PruneBackup.Run(dir.Path, options)).Kind);
        Assert.Equal(VDiskErrorKind.NotFound, Assert.Throws<VDiskException>(() => PruneBackup.Plan(dir.File("none"), options)).Kind);
        Assert.False(Directory.Exists(dir.File("none")));
    }
}
