// Runs every engine path a cmdlet takes over the malformed-image corpus (MalformedCorpus) and checks the
// answer each case declares, with the safety properties that hold for every input: only VDiskExceptions
// (of the declared kind, naming the file and the problem), no operation on a case slower than 2 s or allocating
// 64 MiB or more, no input byte changed, no output left behind by a failed conversion. The collection runs
// alone, so the process-wide allocation counter measures only the operation under test.
using System.Diagnostics;
using System.Security.Cryptography;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Corpus;

[CollectionDefinition(nameof(CorpusCollection), DisableParallelization = true)]
public sealed class CorpusCollection : ICollectionFixture<CorpusFixture>;

/// <summary>The corpus, written once for the collection.</summary>
public sealed class CorpusFixture : IDisposable
{
    private readonly TempFolder _folder = new();

    public CorpusFixture()
    {
        Cases = MalformedCorpus.WriteAll(_folder.File("cases"));
        Output = Directory.CreateDirectory(_folder.File("output")).FullName;
    }

    public IReadOnlyList<CorpusCase> Cases { get; }
    public string Output { get; }

    public void Dispose() => _folder.Dispose();
}

[Collection(nameof(CorpusCollection))]
public class CorpusTests(CorpusFixture corpus)
{
    private const long AllocationLimit = 64L << 20;
    private static readonly TimeSpan TimeLimit = TimeSpan.FromSeconds(2), HangLimit = TimeSpan.FromSeconds(20);

    [Fact]
    public void TheCorpusCoversEveryFormatWithEnoughCases()
    {
        Assert.True(corpus.Cases.Count >= 250, $"only {corpus.Cases.Count} cases");
        foreach (var family in new[] { "qcow2", "vmdk", "vdi", "raw" })
            Assert.Contains(corpus.Cases, c => c.Family == family);
        Assert.Contains(corpus.Cases, c => c.FailsAt is null);
        foreach (CorpusStage stage in Enum.GetValues<CorpusStage>())
            Assert.Contains(corpus.Cases, c => c.FailsAt == stage);
        foreach (var name in MalformedCorpus.KnownQcow2CoreFailures.Keys)
            Assert.Contains(corpus.Cases, c => c.Name == name);
    }

    [Fact]
    public void EveryCaseGetsItsDeclaredAnswerSafely()
    {
        var problems = new List<string>();
        foreach (var c in corpus.Cases)
        {
            var found = Run(c);
            if (c.KnownCoreFailure is { } known)
            {
                if (!found.Any(p => p.Contains(known, StringComparison.Ordinal)))
                    problems.Add($"{c.Name}: listed in KnownQcow2CoreFailures as \"{known}\", which no longer happens (found: {string.Join("; ", found)}); remove it from the list.");
                continue;
            }
            problems.AddRange(found.Select(p => $"{c.Name}: {p}"));
        }
        Assert.True(problems.Count == 0, $"{problems.Count} problems:\n" + string.Join("\n", problems));
    }

    // Every operation of the case; returns what went wrong.
    private List<string> Run(CorpusCase c)
    {
        var problems = new List<string>();
        var before = HashInputs(c.Folder);
        string output = Path.Combine(corpus.Output, c.Name);
        Directory.CreateDirectory(output);

        var warnings = new List<string>();
        Check(c, c.ExpectedAt(CorpusStage.Info), "info", problems, () =>
        {
            using (EngineWarnings.Listen(w => { lock (warnings) warnings.Add(w); }))
            {
                var info = InspectImage.Run(c.Path);
                if (info.ChainProblem != null) warnings.Add(info.ChainProblem);
            }
            if (c.WarnsAtInfo != (warnings.Count > 0))
                problems.Add(c.WarnsAtInfo ? "info gave no warning" : $"info warned: {string.Join(" | ", warnings)}");
        });
        Check(c, c.ExpectedAt(CorpusStage.Open), "open", problems, () => ImageChain.Open(c.Path).Dispose());
        Check(c, c.ExpectedAt(CorpusStage.Open), "create overlay", problems, () =>
            CreateImage.Run(Path.Combine(output, "overlay.qcow2"), new CreateOptions { BackingPath = c.Path }));
        Check(c, c.ExpectedAt(CorpusStage.Map), "chain", problems, () => InspectImage.Chain(c.Path));
        Check(c, c.ExpectedAt(CorpusStage.Map), "map", problems, () => MapImage.Run(c.Path).Count());
        Check(c, c.ExpectedAt(CorpusStage.Open), "measure", problems, () => MeasureImage.Run(c.Path, null, new MeasureOptions())); // its qcow2 walk is map's
        string converted = Path.Combine(output, "converted.qcow2");
        Check(c, c.ExpectedAt(CorpusStage.Read), "convert", problems, () =>
        {
            ConvertImage.Run(c.Path, converted, new ConvertOptions { DestinationFormat = ImageFormat.Qcow2 });
            if (!CompareImages.Run(c.Path, converted).Equal) problems.Add("the conversion differs from its source");
        });
        if (c.ExpectedAt(CorpusStage.Read) != null && File.Exists(converted)) problems.Add("a failed conversion left its output");
        Check(c, c.ExpectedAt(CorpusStage.Read), "compare", problems, () =>
        {
            if (!CompareImages.Run(c.Path, c.Path).Equal) problems.Add("the image differs from itself");
        });

        if (c.Snapshot != null)
        {
            string snapshot = Path.Combine(output, "snapshot.qcow2");
            Check(c, c.SnapshotError, "convert snapshot", problems, () =>
                ConvertImage.Run(c.Path, snapshot, new ConvertOptions { DestinationFormat = ImageFormat.Qcow2, Snapshot = c.Snapshot }));
        }

        var after = HashInputs(c.Folder);
        if (!before.SequenceEqual(after)) problems.Add("an input file changed");
        return problems;
    }

    // Runs one operation (guarded against hangs), measuring its allocations, and checks its outcome.
    private static void Check(CorpusCase c, VDiskErrorKind? expected, string operation, List<string> problems, Action work)
    {
        long allocated = GC.GetTotalAllocatedBytes(precise: true);
        var watch = Stopwatch.StartNew();
        var task = Task.Run(work);
        if (!((IAsyncResult)task).AsyncWaitHandle.WaitOne(HangLimit))
        {
            problems.Add($"{operation} did not finish within {HangLimit.TotalSeconds} s");
            return;
        }
        if (watch.Elapsed > TimeLimit) problems.Add($"{operation} took {watch.Elapsed.TotalSeconds:F2} s");
        allocated = GC.GetTotalAllocatedBytes(precise: true) - allocated;
        if (allocated >= AllocationLimit) problems.Add($"{operation} allocated {allocated >> 20} MiB");
        var error = task.Exception?.InnerException;
        if (error is null)
        {
            if (expected != null) problems.Add($"{operation} succeeded; expected {expected}");
            return;
        }
        if (error is not VDiskException e)
        {
            problems.Add($"{operation} threw {error.GetType().Name}: {error.Message}\n{error.StackTrace}");
            return;
        }
        if (expected is null)
        {
            problems.Add($"{operation} failed unexpectedly ({e.Kind}): {e.Message}");
            return;
        }
        if (e.Kind != expected) problems.Add($"{operation} failed with {e.Kind}, expected {expected}: {e.Message}");
        string file = c.ErrorPath ?? c.Path;
        if (e.Path != file) problems.Add($"{operation}: the error names '{e.Path}', expected '{file}': {e.Message}");
        if (!e.Message.Contains(file, StringComparison.Ordinal)) problems.Add($"{operation}: the message does not name '{file}': {e.Message}");
        if (c.Mentions != null && !e.Message.Contains(c.Mentions, StringComparison.OrdinalIgnoreCase))
            problems.Add($"{operation}: the message does not mention '{c.Mentions}': {e.Message}");
    }

    // SHA-256 of every regular file of the case (never opening a FIFO or device a link points at).
    private static List<string> HashInputs(string folder) => Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
        .Where(f => new FileInfo(f).LinkTarget is null && HostFileKind.Of(f) == HostFileType.Regular)
        .Order(StringComparer.Ordinal)
        .Select(f => f + ":" + Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(f))))
        .ToList();
}
