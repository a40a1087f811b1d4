// Crash tests of operations on whole chains of files (commit, pull, rebase): every storage an operation opens for
// writing is recorded by the power-loss simulator, with the bytes every other file of the folder held at that moment.
// Each crash image of each recorded file is put back among those files in a scratch folder, where it must pass our
// reference check (and, on a sample, qemu-img check: leaks allowed), the top must read exactly what it read before
// the operation, and an extra check (running a commit again to finish it) may follow.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.PowerLoss;

/// <summary>One file an operation wrote, and the folder's other files as they were when it was opened.</summary>
public sealed record RecordedFile(string Name, PowerLossStorage Recorder, IReadOnlyDictionary<string, byte[]> Others);

public static class ChainCrashHarness
{
    /// <summary>Runs <paramref name="operation"/> with every writable storage recorded; files live in <paramref name="folder"/>.</summary>
    public static List<RecordedFile> Record(string folder, Action operation)
    {
        var files = new List<RecordedFile>();
        ImageChain.WritableStorageWrapper.Value = storage =>
        {
            string name = Path.GetFileName(storage.Name);
            var others = Directory.GetFiles(folder).Where(f => Path.GetFileName(f) != name)
                .ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes);
            var recorder = new PowerLossStorage(storage);
            files.Add(new RecordedFile(name, recorder, others));
            return recorder;
        };
        try
        {
            operation();
        }
        finally
        {
            ImageChain.WritableStorageWrapper.Value = null;
        }
        return files;
    }

    /// <summary>
    /// Checks every crash image of every recorded file (see the file comment): <paramref name="top"/> (a file name)
    /// must read <paramref name="expected"/> wherever it still exists; <paramref name="extra"/> gets the scratch folder
    /// and the crash image's index and returns a failure or null. Returns the failures (at most five).
    /// </summary>
    public static List<string> Verify(IEnumerable<RecordedFile> files, string top, byte[] expected, int seed,
        Func<string, int, string?>? extra = null)
    {
        var failures = new List<string>();
        int subsets = CrashHarness.FullSweep ? 12 : 4, qemuEvery = CrashHarness.FullSweep ? 1 : 8, n = 0;
        using var scratch = new TempFolder();
        foreach (var file in files)
        {
            foreach (var crash in file.Recorder.CrashImages(new Random(seed), subsets))
            {
                string? failure = VerifyOne(scratch, file, crash, top, expected, Qemu.Available && n % qemuEvery == 0);
                if (failure is null && extra != null) failure = extra(scratch.Path, n);
                n++;
                if (failure != null) failures.Add($"{file.Name}, {crash.Description}: {failure}");
                if (failures.Count >= 5) return failures;
            }
        }
        Assert.True(n > 0, "the operation wrote nothing: no crash image to check");
        return failures;
    }

    private static string? VerifyOne(TempFolder scratch, RecordedFile file, CrashImage crash, string top, byte[] expected, bool qemuCheck)
    {
        foreach (var stale in Directory.GetFiles(scratch.Path)) File.Delete(stale);
        foreach (var (name, bytes) in file.Others) File.WriteAllBytes(scratch.File(name), bytes);
        File.WriteAllBytes(scratch.File(file.Name), crash.Bytes);
        bool qcow2 = crash.Bytes.Length >= 4 && crash.Bytes[0] == 0x51 && crash.Bytes[1] == 0x46 && crash.Bytes[2] == 0x49 && crash.Bytes[3] == 0xfb;
        try
        {
            if (qcow2)
            {
                if (Qcow2Consistency.Check(file.Name, crash.Bytes).Failure is { } failure) return failure;
            }
            if (qcow2 && qemuCheck)
            {
                var (code, output) = Qemu.TryImg("check", "-f", "qcow2", scratch.File(file.Name));
                if (code is not (0 or 3)) return $"qemu-img check exited {code}: {output}";
            }
            if (File.Exists(scratch.File(top)))
            {
                using var disk = Images.OpenReadOnly(scratch.File(top));
                return Differs(Images.ReadAll(disk), expected, top);
            }
        }
        catch (VDiskException e)
        {
            return $"does not read: {e.Message}";
        }
        return null;
    }

    /// <summary>Null when <paramref name="actual"/> is <paramref name="expected"/>; else where they first differ.</summary>
    public static string? Differs(byte[] actual, byte[] expected, string what)
    {
        if (actual.Length != expected.Length) return $"{what} is {actual.Length} bytes, not {expected.Length}";
        int at = actual.AsSpan().CommonPrefixLength(expected);
        return at == actual.Length ? null : $"{what} reads 0x{actual[at]:x2} at guest byte {at}, not 0x{expected[at]:x2}";
    }
}
