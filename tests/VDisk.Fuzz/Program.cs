// The fuzz runner's command line (docs/fuzzing.md):
//   fuzz TARGET                         run under afl-fuzz (SharpFuzz fork server; afl hands over each input)
//   seeds TARGET FOLDER [--extra DIR]... write the target's seed corpus
//   run TARGET PATH...                  replay files (or every file of folders), e.g. afl's crashes; exit 1 on a crash
//   list                                print the target names
using System.Diagnostics;
using System.Runtime.InteropServices;
using SharpFuzz;
using VDisk.Fuzz;
using VDisk.Fuzz.Seeds;

return args switch
{
    ["fuzz", var target] => Fuzz(target),
    ["seeds", var target, var folder, .. var rest] => Seeds(target, folder, rest),
    ["run", var target, .. var paths] when paths.Length > 0 => Replay(target, paths),
    ["list"] => List(),
    _ => Usage(),
};

static int Fuzz(string target)
{
    FuzzTargets.Get(target); // an unknown name fails here, not as a crash of every input
    var buffer = new MemoryStream();
    Fuzzer.Run(stream =>
    {
        buffer.SetLength(0);
        stream.CopyTo(buffer);
        FuzzTargets.Run(target, buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    });
    return 0;
}

static int Seeds(string target, string folder, string[] rest)
{
    GiveTraceMemory();
    if (rest.Length % 2 != 0 || rest.Where((_, i) => i % 2 == 0).Any(a => a != "--extra")) return Usage();
    int count = SeedCorpus.Write(target, folder, rest.Where((_, i) => i % 2 == 1));
    Console.WriteLine($"{count} seeds for {target} in {folder}");
    return 0;
}

static int Replay(string target, string[] paths)
{
    GiveTraceMemory();
    int crashes = 0;
    var files = paths.SelectMany(p => Directory.Exists(p) ? Directory.EnumerateFiles(p).Order() : (IEnumerable<string>)new[] { p });
    foreach (var file in files.Where(f => Path.GetFileName(f) != "README.txt"))
    {
        var clock = Stopwatch.StartNew();
        try
        {
            var outcome = FuzzTargets.Run(target, File.ReadAllBytes(file));
            string what = outcome switch
            {
                { OpenFinding: { } id } => $"open finding {id} (a known crash, see OpenFindings.cs)",
                { Rejection: { } e } => $"refused ({e.Kind}): {e.Message}",
                _ => $"accepted: {outcome.VirtualSize} bytes, {outcome.BytesWalked} walked in {outcome.Runs} runs",
            };
            Console.WriteLine($"{file}: {what} [{clock.ElapsedMilliseconds} ms]");
        }
        catch (Exception e)
        {
            crashes++;
            Console.WriteLine($"{file}: CRASH [{clock.ElapsedMilliseconds} ms]\n{e}");
        }
    }
    return crashes == 0 ? 0 : 1;
}

// An engine assembly instrumented by sharpfuzz records branches in SharpFuzz's trace map, which only Fuzzer.Run sets up;
// making seeds or replaying with the instrumented copy (out/fuzz/bin) needs a map of its own. Harmless uninstrumented.
static unsafe void GiveTraceMemory()
{
    if (SharpFuzz.Common.Trace.SharedMem == null) SharpFuzz.Common.Trace.SharedMem = (byte*)NativeMemory.AllocZeroed(1 << 16);
}

static int List()
{
    foreach (var target in FuzzTargets.All) Console.WriteLine(target.Name);
    return 0;
}

static int Usage()
{
    Console.Error.WriteLine("usage: VDisk.Fuzz fuzz TARGET | seeds TARGET FOLDER [--extra DIR]... | run TARGET PATH... | list");
    Console.Error.WriteLine($"targets: {string.Join(", ", FuzzTargets.All.Select(t => t.Name))}");
    return 2;
}
