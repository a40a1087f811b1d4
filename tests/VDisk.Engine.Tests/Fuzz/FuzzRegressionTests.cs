// Every crash the fuzzers found stays fixed: each reproducer in FuzzRegressions/<target>/<name>.<outcome>.bin runs
// through the same target logic afl-fuzz drives (VDisk.Fuzz.FuzzTargets) and must end as its name says: "accepted",
// or refused with that VDiskErrorKind, never with another exception, a broken mapping answer or an allocation over
// the budget. And each target's generated seeds must be accepted and walked to the end of the disk, so a broken
// seed step or target cannot pass the fuzz smoke runs by refusing everything.
using VDisk.Engine.Core;
using VDisk.Fuzz;
using VDisk.Fuzz.Seeds;

namespace VDisk.Engine.Tests.Fuzz;

public class FuzzRegressionTests
{
    private static readonly string Root = Path.Combine(AppContext.BaseDirectory, "FuzzRegressions");

    public static TheoryData<string, string> Reproducers()
    {
        var data = new TheoryData<string, string>();
        foreach (var folder in Directory.EnumerateDirectories(Root).Order())
            foreach (var file in Directory.EnumerateFiles(folder, "*.bin").Order())
                data.Add(Path.GetFileName(folder), Path.GetFileName(file));
        return data;
    }

    public static TheoryData<string> Targets() => new(FuzzTargets.All.Select(t => t.Name));

    [Theory]
    [MemberData(nameof(Reproducers))]
    public void ReproducerEndsAsItsNameSays(string target, string file)
    {
        var outcome = FuzzTargets.Run(target, File.ReadAllBytes(Path.Combine(Root, target, file)));
        string actual = outcome.Accepted ? "accepted" : outcome.Rejection!.Kind.ToString().ToLowerInvariant();
        Assert.Equal(ExpectedOutcome(file), actual);
    }

    [Fact]
    public void ReproducersAreNamedAfterATargetAndAnOutcome()
    {
        var targets = FuzzTargets.All.Select(t => t.Name).ToHashSet();
        var outcomes = Enum.GetNames<VDiskErrorKind>().Select(n => n.ToLowerInvariant()).Append("accepted").ToHashSet();
        var files = Directory.EnumerateFiles(Root, "*", SearchOption.AllDirectories).ToList();
        Assert.NotEmpty(files);
        Assert.All(files, f => Assert.Contains(Path.GetFileName(Path.GetDirectoryName(f))!, targets));
        Assert.All(files, f => Assert.Contains(ExpectedOutcome(Path.GetFileName(f)), outcomes));
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void SeedsAreAcceptedAndWalkedToTheEnd(string target)
    {
        var seeds = SeedCorpus.Generate(target);
        Assert.True(seeds.Count >= 4, $"{target}: only {seeds.Count} seeds");
        Assert.All(seeds, seed => Assert.True(seed.Bytes.Length <= FuzzTargets.MaxInputBytes, seed.Name));
        foreach (var seed in seeds)
        {
            var outcome = FuzzTargets.Run(target, seed.Bytes);
            Assert.True(outcome.Accepted, $"{seed.Name}: {outcome.Rejection?.Message}");
            Assert.True(outcome.Runs > 0, $"{seed.Name}: nothing visited");
            Assert.Equal(outcome.VirtualSize, outcome.BytesWalked);
        }
    }

    // name.outcome.bin
    private static string ExpectedOutcome(string file) => file.Split('.') is [.., var outcome, "bin"] ? outcome : "";
}
