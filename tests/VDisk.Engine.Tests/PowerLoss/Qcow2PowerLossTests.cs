// Every qcow2 metadata-changing path under the power-loss simulator: allocating writes over a backing file,
// new L2 tables with caches small enough to evict, refcount-table growth, lazy refcounts (dirty bit),
// compressed writes and their overwrites, and v2 images. Each crash image must open, check clean (leaks
// allowed) and hold every flushed byte; and each barrier, left out, must make some crash image fail.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.PowerLoss;

public class Qcow2PowerLossTests
{
    private const long Size = 4 << 20;

    private static readonly CrashScenario[] All =
    {
        RandomWrites("allocating writes over a backing file", new CreateOptions { ClusterSize = 4096 }, backing: true, tinyCaches: false, seed: 11),
        RandomWrites("new L2 tables with evicting caches", new CreateOptions { ClusterSize = 1024 }, backing: false, tinyCaches: true, seed: 12),
        RandomWrites("lazy refcounts over a backing file", new CreateOptions { ClusterSize = 4096, LazyRefcounts = true }, backing: true, tinyCaches: true, seed: 13),
        RandomWrites("compat 0.10 over a backing file", new CreateOptions { ClusterSize = 2048, Compat = "0.10" }, backing: true, tinyCaches: true, seed: 14),
        RandomWrites("compressed writes and overwrites", new CreateOptions { ClusterSize = 4096, RefcountBits = 4 }, backing: false, tinyCaches: true, seed: 15, compressed: true),
        RefcountTableGrowth(),
        L1Growth(),
    };

    public static TheoryData<CrashScenario> Scenarios => new(All);

    [Theory]
    [MemberData(nameof(Scenarios))]
    public void EveryCrashImageOpensChecksCleanAndHoldsFlushedData(CrashScenario scenario)
    {
        Qemu.Require();
        CrashHarness.AssertSurvivesPowerLoss(scenario);
    }

    /// <summary>The barriers each scenario depends on: without any one of them, some crash image must fail.</summary>
    public static TheoryData<string, string> Barriers => new()
    {
        { "L1 table", "new L2 tables with evicting caches" },                 // new L2 table before the L1 entry
        { "L2 tables", "allocating writes over a backing file" },            // data and counts before the L2 entry
        { "refcount table", "refcount table growth" },                       // new refcount block before its table entry
        { "refcount blocks", "compressed writes and overwrites" },           // a table stops pointing before the count drops
        { Qcow2HeaderUpdater.BarrierName, "lazy refcounts over a backing file" }, // all metadata before the clean header
        { Qcow2HeaderUpdater.BarrierName, "L1 table growth" },                  // the new L1 table before the header points at it
    };

    [Theory]
    [MemberData(nameof(Barriers))]
    public void LeavingOutABarrierIsCaught(string barrier, string scenarioName)
    {
        var scenario = All.Single(s => s.Name == scenarioName);
        int failing = 0;
        for (int seed = 1; seed <= 3 && failing == 0; seed++)
        {
            using (Qcow2WriteOrder.SkipBarrierBefore(barrier))
            {
                var (recorder, log) = CrashHarness.Record(scenario);
                failing = CrashHarness.Verify(scenario, recorder, log, seed, maxFailures: 1).Count;
            }
        }
        Assert.True(failing > 0, $"without the barrier before '{barrier}', every crash image of '{scenarioName}' still passed: the test cannot see that barrier");
    }

    // An image with an internal snapshot (made by qemu-img): writes copy shared L2 tables and clusters, and the
    // snapshot must read back unchanged from every crash image.
    [SkippableFact]
    public void WritesToAnImageWithASnapshotKeepTheSnapshotIntact()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string path = dir.File("snap.qcow2");
        Images.Create(path, new CreateOptions { Size = Size, ClusterSize = 4096 });
        var before = CrashHarness.Pattern(1 << 20, 7);
        using (var disk = Images.OpenWritable(path)) disk.Write(0, before);
        Qemu.Img("snapshot", "-c", "before", path);
        var scenario = RandomWrites("writes over a snapshot", new CreateOptions { ClusterSize = 4096 }, backing: false, tinyCaches: true, seed: 16);
        var (recorder, log) = CrashHarness.Record(scenario, File.ReadAllBytes(path));
        var failures = CrashHarness.Verify(scenario, recorder, log, seed: 1, extraCheck: (crash, _) =>
        {
            using var snapshot = new VirtualDisk("crash.qcow2", Qcow2Driver.OpenSnapshot(new MemoryStorage("crash.qcow2", crash.Bytes, canWrite: false), "before"), null, false);
            var content = new byte[before.Length];
            snapshot.Read(0, content);
            Assert.True(content.AsSpan().SequenceEqual(before), $"{crash.Description}: the snapshot's content changed");
        });
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    // A compressed conversion, recorded through the engine's own convert: the output only has to be complete after
    // its final flush, but every crash image before it must still open and check clean.
    [SkippableFact]
    public void CompressedConvertLeavesAConsistentImageAtEveryCrashPoint()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string source = dir.File("source.raw");
        var bytes = SampleData.WriteRaw(source, (int)Size, 3);
        PowerLossStorage? recorder = null;
        ImageChain.WritableStorageWrapper.Value = s => recorder = new PowerLossStorage(s);
        try
        {
            ConvertImage.Run(source, dir.File("out.qcow2"), new ConvertOptions { Compress = true, ClusterSize = 4096, ThrottleLimit = 2 });
        }
        finally
        {
            ImageChain.WritableStorageWrapper.Value = null;
        }
        var scenario = new CrashScenario("compressed convert", new CreateOptions { ClusterSize = 4096 }, Size, null, false, (_, _, _) => { });
        var log = new GuestLog(new byte[Size]);
        log.Wrote(0, bytes);
        log.Flushed(recorder!.FlushCount);
        var failures = CrashHarness.Verify(scenario, recorder, log, seed: 1);
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    private static CrashScenario RandomWrites(string name, CreateOptions options, bool backing, bool tinyCaches, int seed, bool compressed = false)
        => new(name, options, Size, backing ? Images.Pattern((int)Size, seed) : null, tinyCaches, (disk, log, storageFlushes) =>
        {
            var random = new Random(seed);
            int cluster = options.ClusterSize;
            // Half the operations land in the first 512 KiB, so clusters get overwritten, zeroed and freed there.
            long Span() => random.Next(2) == 0 ? 512 << 10 : Size;
            for (int op = 0; op < 48; op++)
            {
                int kind = random.Next(10);
                if (compressed && kind < 4)
                {
                    long at = random.NextInt64(Span() / cluster) * cluster;
                    var unit = CrashHarness.Pattern(cluster, op);
                    var payload = new byte[cluster * 2];
                    var writer = (ICompressedClusterWriter)disk.Driver;
                    Assert.True(writer.TryCompress(unit, payload, out int length));
                    disk.WriteCompressed(at, payload.AsSpan(0, length));
                    log.Wrote(at, unit);
                }
                else if (kind < 8)
                {
                    long at = random.NextInt64(Span() / 512 - 24) * 512;
                    var data = CrashHarness.Pattern(512 * random.Next(1, 24), op);
                    disk.Write(at, data);
                    log.Wrote(at, data);
                }
                else
                {
                    long at = random.NextInt64(Span() / 512 - 32) * 512;
                    int length = 512 * random.Next(1, 32);
                    disk.WriteZeroes(at, length, unmap: random.Next(2) == 0);
                    log.Wrote(at, new byte[length]);
                }
                if (random.Next(4) == 0)
                {
                    disk.Flush();
                    log.Flushed(storageFlushes());
                }
            }
            // Fresh allocations left unflushed when the image is closed: with lazy refcounts, only the barrier before
            // the clean header keeps their counts from being lost behind it.
            for (int tail = 1; tail <= 4; tail++)
            {
                var data = CrashHarness.Pattern(3 * cluster, 100 + tail);
                disk.Write(Size - tail * 4L * cluster, data);
                log.Wrote(Size - tail * 4L * cluster, data);
            }
        });

    // The L1 table moves to a bigger place between flushed writes (512-byte clusters: 64 entries per L1 cluster).
    private static CrashScenario L1Growth()
        => new("L1 table growth", new CreateOptions { ClusterSize = 512 }, Size, null, TinyCaches: true, (disk, log, storageFlushes) =>
        {
            var image = ((Qcow2Driver)disk.Driver).Image;
            for (int step = 0; step < 6; step++)
            {
                var data = CrashHarness.Pattern(96 << 10, step);
                disk.Write(step * (512L << 10), data);
                log.Wrote(step * (512L << 10), data);
                if (step is 2 or 4) image.GrowL1(image.Active.L1.Count + 200 * step);
                disk.Flush();
                log.Flushed(storageFlushes());
            }
        });

    // 512-byte clusters with 64-bit refcounts: a refcount block covers 32 KiB and the first table 2 MiB, so 2.5 MiB of
    // sequential writes grow the table; flushes every 256 KiB.
    private static CrashScenario RefcountTableGrowth()
        => new("refcount table growth", new CreateOptions { ClusterSize = 512, RefcountBits = 64 }, Size, null, TinyCaches: true, (disk, log, storageFlushes) =>
        {
            for (int chunk = 0; chunk < 10; chunk++)
            {
                var data = CrashHarness.Pattern(256 << 10, chunk);
                disk.Write(chunk * (256L << 10), data);
                log.Wrote(chunk * (256L << 10), data);
                disk.Flush();
                log.Flushed(storageFlushes());
            }
        });
}
