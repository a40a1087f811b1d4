// Runs a guest workload on a qcow2 image over the power-loss simulator, then checks every crash image it can
// make: the image opens, its references and refcounts are consistent (leaks allowed; a dirty lazy-refcount
// image is first repaired by our repair, as QEMU would on open, and must come out clean), and every byte written before the last completed flush
// reads back. qemu-img check runs on a sample of the crash images (all of them with VDISK_POWERLOSS_FULL=1).
using System.Text;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Formats.Raw;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.PowerLoss;

/// <summary>The guest's writes and flushes, in order, so the content any flush guaranteed can be rebuilt.</summary>
public sealed class GuestLog
{
    private readonly byte[] _initial;
    private readonly List<(int Epoch, long Offset, byte[] Data)> _writes = new();
    private readonly List<int> _flushedAtStorageFlush = new(); // per completed guest flush: storage flushes done by then

    public GuestLog(byte[] initial) => _initial = initial;

    /// <summary>Guest flushes completed so far.</summary>
    public int Epoch => _flushedAtStorageFlush.Count;

    public void Wrote(long offset, ReadOnlySpan<byte> data) => _writes.Add((Epoch, offset, data.ToArray()));

    public void Flushed(int storageFlushes) => _flushedAtStorageFlush.Add(storageFlushes);

    /// <summary>
    /// For a crash after <paramref name="storageFlushes"/> storage flushes: the guaranteed content and which bytes are
    /// not guaranteed (written after the last completed guest flush).
    /// </summary>
    public (byte[] Expected, bool[] Loose) Oracle(int storageFlushes)
    {
        int completed = _flushedAtStorageFlush.Count(f => f <= storageFlushes);
        if (_cached is { } c && c.Completed == completed) return (c.Expected, c.Loose); // crash images come in flush order
        var expected = (byte[])_initial.Clone();
        var loose = new bool[expected.Length];
        foreach (var (epoch, offset, data) in _writes)
        {
            if (epoch < completed) data.CopyTo(expected, offset);
            else loose.AsSpan((int)offset, data.Length).Fill(true);
        }
        _cached = (completed, expected, loose);
        return (expected, loose);
    }

    private (int Completed, byte[] Expected, bool[] Loose)? _cached;
}

/// <summary>A crash-test scenario: a fresh image, an optional backing content, and a workload.</summary>
public sealed record CrashScenario(string Name, CreateOptions Options, long Size, byte[]? Backing, bool TinyCaches,
    Action<VirtualDisk, GuestLog, Func<int>> Workload)
{
    public override string ToString() => Name;
}

public static class CrashHarness
{
    public const string BackingName = "backing.raw";

    public static bool FullSweep => Environment.GetEnvironmentVariable("VDISK_POWERLOSS_FULL") == "1";

    /// <summary>What `qemu-img check` finds wrong with a crash image (null: clean, or only leaks), written to a file in <paramref name="scratch"/>.</summary>
    public static string? QemuCheckProblem(TempFolder scratch, byte[] image)
    {
        string file = scratch.File("crash.qcow2");
        File.WriteAllBytes(file, image);
        var (code, output) = Qemu.TryImg("check", "-f", "qcow2", file);
        return code is 0 or 3 ? null : $"qemu-img check exited {code}: {output}";
    }

    /// <summary>Builds the scenario's image, records the workload, and returns the recorder with the guest log.</summary>
    public static (PowerLossStorage Recorder, GuestLog Log) Record(CrashScenario s, byte[]? startImage = null)
    {
        var memory = new MemoryStorage("crash.qcow2", startImage);
        if (startImage is null)
            Qcow2Creator.WriteEmpty(memory, s.Options with { Size = s.Size }, s.Size, s.Backing is null ? null : BackingName, s.Backing is null ? null : ImageFormat.Raw);
        var recorder = new PowerLossStorage(memory);
        long cache = s.TinyCaches ? 4L * s.Options.ClusterSize : 32L << 20;
        var backing = s.Backing is null ? null : MemoryImages.Raw(s.Backing);
        var disk = new VirtualDisk("crash.qcow2", Qcow2Driver.Open(recorder, writable: true, cache, cache), backing, writable: true);
        var log = new GuestLog(Images.ReadAll(disk));
        try
        {
            s.Workload(disk, log, () => recorder.FlushCount);
        }
        finally
        {
            disk.Dispose();
        }
        return (recorder, log);
    }

    /// <summary>Checks every crash image; returns a description of each failure (empty when all pass).</summary>
    public static List<string> Verify(CrashScenario s, PowerLossStorage recorder, GuestLog log, int seed,
        Action<CrashImage, VirtualDisk>? extraCheck = null, int maxFailures = 5)
    {
        var failures = new List<string>();
        int subsets = FullSweep ? 12 : 4, qemuEvery = FullSweep ? 1 : 8, n = 0;
        using var dir = Qemu.Available ? new TempFolder() : null;
        foreach (var crash in recorder.CrashImages(new Random(seed), subsets))
        {
            string? failure = VerifyOne(s, crash, log, extraCheck);
            if (failure is null && dir != null && n++ % qemuEvery == 0) failure = QemuCheck(s, crash, log, dir);
            if (failure != null) failures.Add($"{crash.Description}: {failure}");
            if (failures.Count >= maxFailures) break;
        }
        return failures;
    }

    /// <summary>Runs the scenario and asserts every crash image passes.</summary>
    public static void AssertSurvivesPowerLoss(CrashScenario s, int seed = 1)
    {
        var (recorder, log) = Record(s);
        Assert.True(recorder.FlushCount > 2, $"{s.Name}: the workload should flush several times (did {recorder.FlushCount})");
        var failures = Verify(s, recorder, log, seed);
        Assert.True(failures.Count == 0, $"{s.Name}: {failures.Count} crash image(s) failed:\n{string.Join("\n", failures)}");
    }

    private static string? VerifyOne(CrashScenario s, CrashImage crash, GuestLog log, Action<CrashImage, VirtualDisk>? extraCheck)
    {
        var (failure, bytes) = Qcow2Consistency.Check("crash.qcow2", crash.Bytes);
        if (failure != null) return failure;
        try
        {
            using var disk = Open(s, bytes);
            string? wrong = CompareWithOracle(disk, log, crash.Flushes);
            if (wrong != null) return wrong;
            extraCheck?.Invoke(crash, disk);
        }
        catch (VDiskException e)
        {
            return $"does not read: {e.Message}";
        }
        return null;
    }

    public static VirtualDisk Open(CrashScenario s, byte[] bytes)
        => new("crash.qcow2", Qcow2Driver.Open(new MemoryStorage("crash.qcow2", bytes, canWrite: false), writable: false),
            s.Backing is null ? null : MemoryImages.Raw(s.Backing), writable: false);

    private static string? CompareWithOracle(VirtualDisk disk, GuestLog log, int storageFlushes)
    {
        var (expected, loose) = log.Oracle(storageFlushes);
        var actual = Images.ReadAll(disk);
        for (int i = 0; i < expected.Length; i++)
            if (!loose[i] && actual[i] != expected[i])
                return $"guest byte {i} (0x{i:x}) reads 0x{actual[i]:x2}, but 0x{expected[i]:x2} was flushed there";
        return null;
    }

    // qemu-img check agrees: no corruption (leaks allowed). A dirty lazy-refcount image is first repaired with
    // 'qemu-img check -r all', as qemu would on open, and must then be clean and still hold the flushed data.
    private static string? QemuCheck(CrashScenario s, CrashImage crash, GuestLog log, TempFolder dir)
    {
        string path = dir.File("crash.qcow2");
        File.WriteAllBytes(path, crash.Bytes);
        if (s.Backing != null) File.WriteAllBytes(dir.File(BackingName), s.Backing);
        var (code, output) = Qemu.TryImg("check", "-f", "qcow2", path);
        bool dirty = Qcow2Header.Parse(crash.Bytes.AsSpan(0, Math.Min(crash.Bytes.Length, 2 << 20)), path).IsDirty;
        if (dirty)
        {
            var (repairCode, repairOutput) = Qemu.TryImg("check", "-r", "all", "-f", "qcow2", path);
            if (repairCode is not (0 or 3)) return $"qemu-img check -r all exited {repairCode}: {repairOutput}";
            (code, output) = Qemu.TryImg("check", "-f", "qcow2", path);
            if (code != 0) return $"after repair, qemu-img check exited {code}: {output}";
            using var repaired = Open(s, File.ReadAllBytes(path));
            return CompareWithOracle(repaired, log, crash.Flushes) is { } wrong ? $"after repair: {wrong}" : null;
        }
        return code is 0 or 3 ? null : $"qemu-img check exited {code}: {output}";
    }

    /// <summary>A deterministic, compressible pattern (so compressed writes really compress).</summary>
    public static byte[] Pattern(int length, int seed)
    {
        var text = Encoding.ASCII.GetBytes($"block {seed} of the crash workload; ");
        var data = new byte[length];
        for (int i = 0; i < length; i++) data[i] = (byte)(text[i % text.Length] ^ (i / 4096 & 7));
        return data;
    }
}
