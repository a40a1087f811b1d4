// Commit, pull and rebase under the power-loss simulator (issue 8 "Crash safety"): at every crash point of every
// file they write, each image opens and checks clean (leaks allowed), the top reads exactly what it read before
// (data first, then the header change, which switches in one sector), and an interrupted commit is finished by
// running it again. Each barrier these operations add is proven: left out, some crash image fails.
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Operations;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.PowerLoss;

public class ChainPowerLossTests
{
    private const long Size = 4 << 20;

    [SkippableTheory]
    [InlineData(1, false)]
    [InlineData(3, false)]
    [InlineData(2, true)]
    public void CommitLeavesTheTopReadableAndASecondRunFinishesIt(int depth, bool grow)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = grow ? GrowingChain(dir, depth) : ChainImages.Build(dir, depth, Size, clusterSize: 4096, seed: 200 + depth);
        var expected = Read(chain[^1]);
        string top = Path.GetFileName(chain[^1]), baseName = Path.GetFileName(chain[0]);

        var files = ChainCrashHarness.Record(dir.Path, () => CommitImage.Run(chain[^1], new CommitOptions { BasePath = chain[0] }));

        Assert.Null(ChainCrashHarness.Differs(Read(chain[0]), expected, "the base"));
        int rerunEvery = CrashHarness.FullSweep ? 1 : 4;
        var failures = ChainCrashHarness.Verify(files, top, expected, seed: depth, extra: (folder, n) =>
        {
            if (n % rerunEvery != 0 || !File.Exists(Path.Combine(folder, top))) return null;
            CommitImage.Run(Path.Combine(folder, top), new CommitOptions { BasePath = Path.Combine(folder, baseName) });
            if (File.Exists(Path.Combine(folder, top))) return "a second run left the top behind";
            var (code, output) = Qemu.TryImg("check", Path.Combine(folder, baseName)); // leaks of the crash may remain
            if (code is not (0 or 3)) return $"after a second run, qemu-img check exited {code}: {output}";
            return ChainCrashHarness.Differs(Read(Path.Combine(folder, baseName)), expected, "the base after a second run");
        });
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [SkippableTheory]
    [InlineData(1, 4096)]
    [InlineData(3, 65536)]
    public void PullKeepsTheGuestViewAtEveryCrashPoint(int depth, int clusterSize)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, depth, Size, clusterSize: clusterSize, seed: 300 + depth);
        var expected = Read(chain[^1]);

        var files = ChainCrashHarness.Record(dir.Path, () => RebaseImage.Run(chain[^1], new RebaseOptions()));

        Assert.Null(InspectImage.Run(chain[^1]).BackingPath);
        var failures = ChainCrashHarness.Verify(files, Path.GetFileName(chain[^1]), expected, seed: depth);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [SkippableFact]
    public void SafeRebaseOntoAnotherImageKeepsTheGuestViewAtEveryCrashPoint()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var chain = ChainImages.Build(dir, 2, Size, clusterSize: 4096, seed: 400);
        string other = dir.File("other.qcow2");
        Qemu.Img("create", "-q", "-f", "qcow2", other, Size.ToString());
        ChainImages.Scatter(other, "qcow2", 401, 10, Size, zeroes: false);
        var expected = Read(chain[^1]);

        var files = ChainCrashHarness.Record(dir.Path, () =>
            RebaseImage.Run(chain[^1], new RebaseOptions { BackingPath = other, BackingPathRelative = true }));

        Assert.Equal("other.qcow2", InspectImage.Run(chain[^1]).BackingPath);
        var failures = ChainCrashHarness.Verify(files, Path.GetFileName(chain[^1]), expected, seed: 2);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    // Renaming the backing file moves the name: the new one is written where the old header does not look, then the
    // first sector switches to it. Names of several lengths, each crash image reading through the old or the new name.
    [SkippableFact]
    public void BackingFileRenamesSwitchInOneSector()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        var files = RenameScenario(dir, out var expected);
        for (int seed = 1; seed <= 6; seed++) // few writes: several draws of torn subsets, so a torn switch cannot hide
        {
            var failures = ChainCrashHarness.Verify(files, "L1.qcow2", expected, seed);
            Assert.True(failures.Count == 0, string.Join("\n", failures));
        }
    }

    /// <summary>The barriers of the backing switch: without any one of them, some crash image must fail.</summary>
    [SkippableTheory]
    [InlineData(Qcow2HeaderUpdater.BarrierName)]      // copied data and its metadata before the header drops the backing file
    [InlineData(Qcow2HeaderUpdater.StepBarrierName)]  // a new backing name before the sector that points at it
    public void LeavingOutABarrierOfTheBackingSwitchIsCaught(string barrier)
    {
        Qemu.Require();
        using var dir = new TempFolder();
        List<RecordedFile> files;
        byte[] expected;
        using (Qcow2WriteOrder.SkipBarrierBefore(barrier))
        {
            if (barrier == Qcow2HeaderUpdater.BarrierName)
            {
                var chain = ChainImages.Build(dir, 1, Size, clusterSize: 4096, seed: 500);
                expected = Read(chain[^1]);
                files = ChainCrashHarness.Record(dir.Path, () => RebaseImage.Run(chain[^1], new RebaseOptions()));
            }
            else
            {
                files = RenameScenario(dir, out expected);
            }
        }
        int failing = 0;
        for (int seed = 1; seed <= 12 && failing == 0; seed++) // the subsets of pending writes are drawn at random
            failing = ChainCrashHarness.Verify(files, "L1.qcow2", expected, seed).Count;
        Assert.True(failing > 0, $"without the barrier before '{barrier}', every crash image still passed: the test cannot see that barrier");
    }

    // L1.qcow2 over base.qcow2, its backing name changed (unsafe) to copies of the base with longer and shorter names.
    private static List<RecordedFile> RenameScenario(TempFolder dir, out byte[] expected)
    {
        var chain = ChainImages.Build(dir, 1, Size, seed: 600); // 64 KiB clusters: the name lies in the second sector, after the feature table
        expected = Read(chain[1]);
        var names = new[] { "base-with-a-longer-name.qcow2", "b.qcow2", "base-3.qcow2" };
        foreach (string name in names) File.Copy(chain[0], dir.File(name));
        return ChainCrashHarness.Record(dir.Path, () =>
        {
            foreach (string name in names)
                RebaseImage.Run(chain[1], new RebaseOptions { BackingPath = dir.File(name), BackingPathRelative = true, Unsafe = true });
        });
    }

    // base (2 MiB) under overlays of 4 MiB: the commit grows the base first.
    private static List<string> GrowingChain(TempFolder dir, int depth)
    {
        var paths = new List<string> { dir.File("base.qcow2") };
        Qemu.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", paths[0], (Size / 2).ToString());
        ChainImages.Scatter(paths[0], "qcow2", 700, 8, Size / 2, zeroes: false);
        for (int i = 1; i <= depth; i++)
        {
            paths.Add(dir.File($"L{i}.qcow2"));
            Qemu.Img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", Path.GetFileName(paths[^2]), "-F", "qcow2", paths[^1], Size.ToString());
            ChainImages.Scatter(paths[^1], "qcow2", 700 + i, 6, Size, zeroes: true);
        }
        return paths;
    }

    private static byte[] Read(string image)
    {
        using var disk = Images.OpenReadOnly(image);
        return Images.ReadAll(disk);
    }
}
