// Test-VDisk's check (CheckImage) over the malformed-image corpus: whatever the input, it answers within 2 s, allocates
// under 64 MiB, fails only with a VDiskException naming the file, and never changes an input byte. A case the engine
// opens and reads without error must not break the check either: the check answers with a result, not an exception.
using System.Diagnostics;
using System.Security.Cryptography;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;

namespace VDisk.Engine.Tests.Corpus;

[Collection(nameof(CorpusCollection))]
public class CorpusCheckTests(CorpusFixture corpus)
{
    private const long AllocationLimit = 64L << 20;

    [Fact]
    public void CheckAnswersEveryCaseSafely()
    {
        var problems = new List<string>();
        int results = 0;
        foreach (var c in corpus.Cases.Where(c => c.Family != "raw"))
        {
            string before = Hash(c.Path);
            long allocated = GC.GetTotalAllocatedBytes(precise: true);
            var watch = Stopwatch.StartNew();
            var task = Task.Run(() => CheckImage.Run(c.Path));
            if (!((IAsyncResult)task).AsyncWaitHandle.WaitOne(TimeSpan.FromSeconds(20)))
            {
                problems.Add($"{c.Name}: the check did not finish within 20 s");
                continue;
            }
            if (watch.Elapsed > TimeSpan.FromSeconds(2)) problems.Add($"{c.Name}: the check took {watch.Elapsed.TotalSeconds:F2} s");
            allocated = GC.GetTotalAllocatedBytes(precise: true) - allocated;
            if (allocated >= AllocationLimit) problems.Add($"{c.Name}: the check allocated {allocated >> 20} MiB");
            if (task.Exception?.InnerException is { } error)
            {
                if (error is not VDiskException e) problems.Add($"{c.Name}: the check threw {error.GetType().Name}: {error.Message}\n{error.StackTrace}");
                else if (!e.Message.Contains(e.Path ?? "\0", StringComparison.Ordinal)) problems.Add($"{c.Name}: the error does not name the file: {e.Message}");
                else if (c.FailsAt is null && c.Family == "qcow2") problems.Add($"{c.Name}: a readable image failed the check: {e.Message}");
            }
            else results++;
            if (Hash(c.Path) != before) problems.Add($"{c.Name}: the check changed the input");
        }
        Assert.True(results > 50, $"only {results} cases gave a check result");
        Assert.True(problems.Count == 0, $"{problems.Count} problems:\n" + string.Join("\n", problems));
    }

    private static string Hash(string path) => File.Exists(path) && new FileInfo(path).LinkTarget is null
        ? Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)))
        : path;
}
