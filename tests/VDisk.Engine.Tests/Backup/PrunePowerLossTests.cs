// A prune interrupted at any moment (issue 11 "Safety"). PowerLossStorage wraps one IStorage, but a prune works on
// several files at the file-system level (new images, renames, deletions, the manifest), so crashes are simulated
// there: the prune reports each durable step (BackupSet.Steps) and the test, at a sample of the steps (every other
// one, the commit and the last), copies the set's folder (what kill -9 or a power cut right after that step leaves)
// and throws (the interrupted process then runs its cleanup, as after Ctrl+C; that folder is checked too). Each step is a durable boundary: files are flushed
// before the manifest names them, the manifest is replaced atomically with a folder flush, and renames are made
// durable before any deletion. Between two flushes a power cut may keep any subset of the renames made, so at the
// pending state random subsets are applied as well. Every crash state must read every point of its manifest as
// that point's content with plain qemu-img (before anything repairs it), and a second prune, a restore or
// Test-VDiskBackup must finish it to the same pruned set.
using VDisk.Engine.Backup;
using VDisk.Engine.Core;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Backup;

public class PrunePowerLossTests
{
    private sealed class SimulatedCrash(string step) : Exception($"crash after: {step}");

    private static readonly PruneOptions Options = new()
    {
        Policy = new RetentionPolicy { KeepLast = 2, KeepMonthly = 3 }, TimeZone = TimeZoneInfo.Utc, ThrottleLimit = 2,
    };

    private static readonly DateTimeOffset[] Kept = new[] { 1, 3, 8, 9 }.Select(i => PruneSets.Times[i]).ToArray();

    private static List<string> StepsOf(string set)
    {
        var steps = new List<string>();
        BackupSet.Steps = steps.Add;
        try { PruneBackup.Run(set, Options); }
        finally { BackupSet.Steps = null; }
        return steps;
    }

    private static string? CrashAt(string set, int n, string copyTo)
    {
        int seen = 0;
        string? at = null;
        BackupSet.Steps = step =>
        {
            if (seen++ != n) return;
            at = step;
            PruneSets.CopyFolder(set, copyTo);
            throw new SimulatedCrash(step);
        };
        try { Assert.Throws<SimulatedCrash>(() => PruneBackup.Run(set, Options)); }
        finally { BackupSet.Steps = null; }
        return at;
    }

    [SkippableFact]
    public void APruneInterruptedAfterAnyStepLeavesEveryPointReadableAndASecondPruneFinishesIt()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (template, expected) = PruneSets.Copy(dir, "template");
        PruneSets.CopyFolder(template, dir.File("probe"));
        var steps = StepsOf(dir.File("probe"));
        Assert.Contains("manifest saved with the pending prune", steps);
        Assert.True(steps.Count > 20, string.Join("\n", steps));

        int pending = steps.IndexOf("manifest saved with the pending prune");
        foreach (int n in Enumerable.Range(0, steps.Count).Where(n => n % 2 == 0 || n == pending || n == steps.Count - 1)) // sampled: about half
        {
            string work = dir.File($"work{n}"), crash = dir.File($"crash{n}");
            PruneSets.CopyFolder(template, work);
            string step = CrashAt(work, n, crash)!;
            Assert.Equal(steps[n], step);

            PruneSets.AssertEveryPointReadsItsContent(crash, expected);  // as kill -9 or a power cut left it
            PruneSets.AssertEveryPointReadsItsContent(work, expected);   // as the interrupted process left it
            PruneBackup.Run(crash, Options);
            PruneSets.AssertPruned(crash, expected, Kept);
            Directory.Delete(work, recursive: true);
            Directory.Delete(crash, recursive: true);
        }
    }

    [SkippableFact]
    public void AtThePendingStateAnySubsetOfRenamesReadsTheSameAndAReaderOrTestFinishesThePrune()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (template, expected) = PruneSets.Copy(dir, "template");
        PruneSets.CopyFolder(template, dir.File("probe"));
        int pendingStep = StepsOf(dir.File("probe")).IndexOf("manifest saved with the pending prune");
        string work = dir.File("work"), pending = dir.File("pending");
        PruneSets.CopyFolder(template, work);
        CrashAt(work, pendingStep, pending);
        var renames = BackupManifest.Load(pending)!.Pending!.Renames;
        Assert.Equal(6, renames.Count); // three rewritten points, an image and a hash file each

        var random = new Random(5);
        for (int trial = 0; trial < 4; trial++)
        {
            string state = dir.File($"subset{trial}");
            PruneSets.CopyFolder(pending, state);
            foreach (var rename in renames.Where(_ => random.Next(2) == 0))
                File.Move(Path.Combine(state, rename.From), Path.Combine(state, rename.To), overwrite: true);
            foreach (var point in BackupManifest.Load(template)!.Points) // old and new manifest: every point reads its content
                Assert.Equal(expected[point.Time], ChainImages.Sha(Path.Combine(state, point.File)));
            if (trial % 2 == 0)
            {
                string restored = dir.File("restored.raw"); // a reader has the prune finished first, then restores
                var result = RestoreBackup.Run(state, restored, new RestoreOptions { Time = Kept[1], DestinationFormat = ImageFormat.Raw, Overwrite = true });
                Assert.Equal(Kept[1], result.Point.Time);
                Assert.Null(BackupManifest.Load(state)!.Pending);
            }
            else
            {
                Assert.All(VerifyBackup.Run(state, wait: false), check => Assert.Empty(check.Problems)); // Test-VDiskBackup finishes it, finds nothing
            }
            PruneSets.AssertPruned(state, expected, Kept);
        }
    }

    [SkippableFact]
    public void CtrlCBeforeThePruneCommitsLeavesEveryFileAsItWas()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var (set, _) = PruneSets.Copy(dir);
        Dictionary<string, string> Files() => Directory.EnumerateFiles(set).Where(f => !f.EndsWith(BackupSet.LockFileName, StringComparison.Ordinal))
            .ToDictionary(f => f, FileChecksums.Of);
        var before = Files();
        using var cancel = new CancellationTokenSource();
        BackupSet.Steps = step => { if (step.StartsWith("wrote", StringComparison.Ordinal)) cancel.Cancel(); };
        try { Assert.ThrowsAny<OperationCanceledException>(() => PruneBackup.Run(set, Options, cancel: cancel.Token)); }
        finally { BackupSet.Steps = null; }
        Assert.Equal(before, Files());
    }
}
