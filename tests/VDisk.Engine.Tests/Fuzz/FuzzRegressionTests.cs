// Every crash the fuzzers found stays fixed: each reproducer in FuzzRegressions/<target>/<name>.<outcome>.bin runs
// through the same target logic afl-fuzz drives (VDisk.Fuzz.FuzzTargets) and must end as its name says: "accepted",
// or refused with that VDiskErrorKind, never with another exception, a broken mapping answer or an allocation over
// the budget. A reproducer named <id>.open.bin is a known crash left to its code's owners (VDisk.Fuzz.OpenFindings):
// it must still trigger exactly that finding, so its fix shows up here as a failure asking to rename it. And each
// target's generated seeds must be accepted and walked to the end of the disk, so a broken seed step or target
// cannot pass the fuzz smoke runs by refusing everything.
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
        if (ExpectedOutcome(file) == "open")
        {
            Assert.True(outcome.OpenFinding == file.Split('.')[0],
                $"{file} no longer triggers its open finding ({Describe(outcome)}): if it is fixed, rename it to name.outcome.bin and remove it from OpenFindings.");
            return;
        }
        Assert.Null(outcome.OpenFinding);
        Assert.Equal(ExpectedOutcome(file), Describe(outcome));
    }

    [Fact]
    public void EveryOpenFindingHasItsReproducer()
    {
        var ids = typeof(OpenFindings).GetFields().Select(f => (string)f.GetValue(null)!).ToList();
        var reproducers = Directory.EnumerateFiles(Root, "*.open.bin", SearchOption.AllDirectories).Select(f => Path.GetFileName(f).Split('.')[0]);
        Assert.Equal(ids.Order(), reproducers.Order());
    }

    [Fact]
    public void ReproducersAreNamedAfterATargetAndAnOutcome()
    {
        var targets = FuzzTargets.All.Select(t => t.Name).ToHashSet();
        var outcomes = Enum.GetNames<VDiskErrorKind>().Select(n => n.ToLowerInvariant()).Append("accepted").Append("open").ToHashSet();
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

    private static string Describe(FuzzOutcome outcome)
        => outcome.Accepted ? "accepted" : outcome.Rejection?.Kind.ToString().ToLowerInvariant() ?? "open";

    // name.outcome.bin
    private static string ExpectedOutcome(string file) => file.Split('.') is [.., var outcome, "bin"] ? outcome : "";
}
