// Internal snapshots under the power-loss simulator, as a state machine: a random sequence of one-cluster writes
// (each flushed, so each is atomic) and snapshot create / apply / delete. After a crash at any point the image
// must check clean (leaks allowed) and be exactly the state before the step in progress or the state after it:
// the active content, and the list of snapshots with each snapshot's content, never a mix. Run without crashes
// the same sequence is the property test against a model.
using System.Security.Cryptography;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Qcow2;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.PowerLoss;

public class SnapshotPowerLossTests
{
    private const int Size = 1 << 20, Cluster = 4096;

    /// <summary>What the image holds: the active content and each snapshot (id, name, content), as hashes.</summary>
    private sealed record State(string Active, string Snapshots)
    {
        public override string ToString() => $"active {Active[..8]}, snapshots [{Snapshots}]";
    }

    [SkippableTheory]
    [InlineData(21, false)]
    [InlineData(22, true)]
    public void EveryCrashDuringSnapshotWorkLeavesTheStateBeforeOrAfterTheStep(int seed, bool lazyRefcounts)
    {
        Qemu.Require();
        var failures = Run(seed, lazyRefcounts, maxFailures: 5);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    // The snapshot table, the new L1 table and the counts must be durable before the header publishes them.
    [SkippableFact]
    public void LeavingOutTheBarrierBeforeTheHeaderIsCaught()
    {
        Qemu.Require();
        using (Qcow2WriteOrder.SkipBarrierBefore(Qcow2HeaderUpdater.BarrierName))
            Assert.NotEmpty(Run(21, lazyRefcounts: false, maxFailures: 1));
    }

    private static List<string> Run(int seed, bool lazyRefcounts, int maxFailures)
    {
        var memory = new MemoryStorage("s.qcow2");
        var options = new CreateOptions { Size = Size, ClusterSize = Cluster, LazyRefcounts = lazyRefcounts };
        Qcow2Creator.WriteEmpty(memory, options, Size, null, null);
        var recorder = new PowerLossStorage(memory);
        var boundaries = new List<(int Flushes, State State)>();
        var model = new Model();
        using (var disk = new VirtualDisk("s.qcow2", Qcow2Driver.Open(recorder, writable: true, 4L * Cluster, 4L * Cluster), null, true))
        {
            var image = Qcow2SnapshotTests.Image(disk);
            boundaries.Add((recorder.FlushCount, model.State()));
            var random = new Random(seed);
            for (int step = 0; step < 40; step++)
            {
                int kind = random.Next(10);
                if (kind < 5 || model.Snapshots.Count == 0 && kind >= 7)
                {
                    long at = random.Next(Size / Cluster) * (long)Cluster;
                    var data = CrashHarness.Pattern(Cluster, step);
                    disk.Write(at, data);
                    disk.Flush();
                    data.CopyTo(model.Active, at);
                }
                else if (kind < 7)
                {
                    var created = image.CreateSnapshot($"s{step}", DateTime.UtcNow);
                    model.Snapshots.Add((created.Id, created.Name, (byte[])model.Active.Clone()));
                }
                else
                {
                    var (id, name, content) = model.Snapshots[random.Next(model.Snapshots.Count)];
                    var snapshot = image.FindSnapshot(id);
                    if (kind < 9)
                    {
                        image.ApplySnapshot(snapshot);
                        model.Active = (byte[])content.Clone();
                    }
                    else
                    {
                        image.DeleteSnapshot(snapshot);
                        model.Snapshots.RemoveAll(s => s.Id == id);
                    }
                }
                Assert.Equal(model.State(), StateOf(disk, image)); // the property: the image matches the model
                boundaries.Add((recorder.FlushCount, model.State()));
            }
        }
        Assert.True(Qcow2Check.Run(memory).IsClean, "after the whole sequence the image must be clean, no leaks");

        using var dir = new TempFolder();
        var failures = new List<string>();
        int checkedImages = 0;
        foreach (var crash in recorder.CrashImages(new Random(seed), CrashHarness.FullSweep ? 12 : 4))
        {
            int before = boundaries.FindLastIndex(b => b.Flushes <= crash.Flushes);
            var allowed = boundaries.Skip(before).Take(2).Select(b => b.State).ToList();
            string? failure = Check(crash.Bytes, allowed);
            if (failure is null && checkedImages % (CrashHarness.FullSweep ? 1 : 8) == 0) failure = QemuCheck(crash.Bytes, allowed, dir);
            checkedImages++;
            if (failure != null) failures.Add($"{crash.Description}: {failure}");
            if (failures.Count >= maxFailures) break;
        }
        Assert.True(checkedImages > 100 || failures.Count > 0, $"only {checkedImages} crash images");
        return failures;
    }

    private static string? Check(byte[] bytes, IReadOnlyList<State> allowed)
    {
        var (failure, consistent) = Qcow2Consistency.Check("crash.qcow2", bytes);
        if (failure != null) return failure;
        try
        {
            using var disk = new VirtualDisk("crash.qcow2", Qcow2Driver.Open(new MemoryStorage("crash.qcow2", consistent, canWrite: false), false), null, false);
            var state = StateOf(disk, Qcow2SnapshotTests.Image(disk));
            return allowed.Contains(state) ? null : $"{state} is neither {string.Join(" nor ", allowed)}";
        }
        catch (VDiskException e)
        {
            return $"does not read: {e.Message}";
        }
    }

    // qemu-img check finds no corruption (leaks allowed); an image left dirty by a cut-short operation is first
    // repaired with 'qemu-img check -r all', as QEMU repairs it on open, and must then still be an allowed state.
    private static string? QemuCheck(byte[] bytes, IReadOnlyList<State> allowed, TempFolder dir)
    {
        string path = dir.File("crash.qcow2");
        File.WriteAllBytes(path, bytes);
        if (Qcow2Header.Parse(bytes.AsSpan(0, Cluster), path).IsDirty)
        {
            var (repair, repairOutput) = Qemu.TryImg("check", "-r", "all", "-f", "qcow2", path);
            if (repair is not (0 or 3)) return $"qemu-img check -r all exited {repair}: {repairOutput}";
            var (after, afterOutput) = Qemu.TryImg("check", "-f", "qcow2", path);
            if (after != 0) return $"after repair, qemu-img check exited {after}: {afterOutput}";
            return Check(File.ReadAllBytes(path), allowed) is { } wrong ? $"after repair: {wrong}" : null;
        }
        var (code, output) = Qemu.TryImg("check", "-f", "qcow2", path);
        return code is 0 or 3 ? null : $"qemu-img check exited {code}: {output}";
    }

    private static State StateOf(VirtualDisk disk, Qcow2Image image)
    {
        var snapshots = image.Snapshots().Select(s =>
        {
            using var view = new VirtualDisk("view", Qcow2Driver.OpenSnapshot(new MemoryStorage("view", Bytes(image), canWrite: false), s.Id), null, false);
            return $"{s.Id}:{s.Name}:{Hash(Images.ReadAll(view))[..8]}";
        });
        return new State(Hash(Images.ReadAll(disk)), string.Join(",", snapshots));
    }

    private static byte[] Bytes(Qcow2Image image)
    {
        image.Flush();
        var bytes = new byte[image.Storage.Length];
        image.Storage.ReadAt(0, bytes);
        return bytes;
    }

    private static string Hash(byte[] bytes) => Convert.ToHexString(SHA256.HashData(bytes));

    private sealed class Model
    {
        public byte[] Active = new byte[Size];
        public readonly List<(string Id, string Name, byte[] Content)> Snapshots = new();

        public State State() => new(Hash(Active), string.Join(",", Snapshots.Select(s => $"{s.Id}:{s.Name}:{Hash(s.Content)[..8]}")));
    }
}
