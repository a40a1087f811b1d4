// Measure-VDiskPerformance's engine (PerformanceTarget, IoWorkload): each cache mode measured on a file opened with
// its kernel flags (O_DIRECT, O_DSYNC, read from /proc/self/fdinfo during the run), Unsafe never reaching fsync, the
// queue depth really in flight at once, the scratch image gone after success, failure and cancellation (cancellation
// removes it before returning, for SIGTERM), an existing image untouched unless writes are allowed, QEMU's locks
// honoured, and numbers consistent with the requests made.
using System.Security.Cryptography;
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;
using VDisk.Engine.Tests.Storage;
using VDisk.Engine.Tests.Support;

namespace VDisk.Engine.Tests.Operations;

public class PerformanceTests
{
    private static readonly PerformanceOptions Small = new() { ScratchSize = 16 << 20, QueueDepth = 4, Count = 200 };

    // Watches every storage the engine opens for writing in this async flow: the kernel's open flags at the first
    // write, flush calls made, fsyncs that reached the host, and the most writes in flight at once.
    private sealed class Observed(IStorage inner) : StorageWrapper(inner)
    {
        private int _inFlight;
        public int? Flags { get; private set; }
        public long FlushCalls;
        public long HostFlushes { get; private set; } = -1;
        public int MaxInFlight;
        public TimeSpan WriteDelay { get; init; }

        public override void WriteAt(long offset, ReadOnlySpan<byte> data)
        {
            lock (this) Flags ??= DirectIoTests.OpenFlags((FileStorage)Inner);
            int now = Interlocked.Increment(ref _inFlight);
            InterlockedMax(ref MaxInFlight, now);
            if (WriteDelay > TimeSpan.Zero) Thread.Sleep(WriteDelay);
            base.WriteAt(offset, data);
            Interlocked.Decrement(ref _inFlight);
        }

        public override void Flush()
        {
            Interlocked.Increment(ref FlushCalls);
            base.Flush();
        }

        public override void Dispose()
        {
            HostFlushes = ((FileStorage)Inner).HostFlushes;
            base.Dispose();
        }

        private static void InterlockedMax(ref int target, int value)
        {
            int seen;
            while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
        }
    }

    private static List<Observed> Observe(TimeSpan writeDelay = default)
    {
        var log = new List<Observed>();
        ImageChain.WritableStorageWrapper.Value = s =>
        {
            var observed = new Observed(s) { WriteDelay = writeDelay };
            lock (log) log.Add(observed);
            return observed;
        };
        return log;
    }

    [SkippableTheory]
    [InlineData(CacheMode.None, true, false)]
    [InlineData(CacheMode.DirectSync, true, true)]
    [InlineData(CacheMode.Writeback, false, false)]
    [InlineData(CacheMode.Writethrough, false, true)]
    [InlineData(CacheMode.Unsafe, false, false)]
    public void EachModeIsMeasuredOnAFileOpenedWithItsFlags(CacheMode mode, bool direct, bool sync)
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "/proc/self/fdinfo is Linux-only");
        using var dir = new TempFolder();
        var log = Observe();
        try
        {
            using var target = PerformanceTarget.Open(dir.Path, Small);
            foreach (var pattern in new[] { IoPattern.RandomWrite, IoPattern.SequentialWrite })
                Assert.Equal(Small.Count, target.Measure(mode, pattern).Operations);
        }
        finally
        {
            ImageChain.WritableStorageWrapper.Value = null;
        }
        var measured = log.Where(o => o.CacheMode == mode && o.Flags != null).Skip(mode == CacheMode.Writeback ? 1 : 0).ToList(); // the fill is Writeback
        Assert.Equal(2, measured.Count);
        foreach (var o in measured)
        {
            Assert.Equal(direct, (o.Flags!.Value & DirectIoTests.ODirect) != 0);
            Assert.Equal(sync, (o.Flags!.Value & DirectIoTests.ODsync) != 0);
            Assert.True(o.FlushCalls >= 1, "every write run ends with a flush");
            if (mode == CacheMode.Unsafe) Assert.Equal(0, o.HostFlushes);
            else Assert.True(o.HostFlushes >= 1, $"{mode} must pass its flushes to the host");
        }
    }

    [Fact]
    public void QueueDepthIsTheNumberOfRequestsInFlightAtOnce()
    {
        using var dir = new TempFolder();
        string image = ExistingRaw(dir, out _);
        var log = Observe(writeDelay: TimeSpan.FromMilliseconds(2));
        PerformanceResult result;
        try
        {
            using var target = PerformanceTarget.Open(image, new PerformanceOptions { QueueDepth = 8, Count = 400, Format = ImageFormat.Raw, AllowWrites = true });
            result = target.Measure(CacheMode.Writeback, IoPattern.RandomWrite);
        }
        finally
        {
            ImageChain.WritableStorageWrapper.Value = null;
        }
        Assert.Equal(8, result.QueueDepth);
        Assert.Equal(8, log.Single().MaxInFlight);
    }

    [Fact]
    public void NumbersAreConsistentWithTheRequestsMade()
    {
        using var dir = new TempFolder();
        using var target = PerformanceTarget.Open(dir.Path, Small with { Count = 3000 });
        var random = target.Measure(CacheMode.Writeback, IoPattern.RandomRead);
        Assert.Equal(3000, random.Operations);
        Assert.Equal(4096, random.BlockSize);
        Assert.Equal(3000 * 4096L, random.Bytes);
        Assert.Equal(random.Operations / random.Elapsed.TotalSeconds, random.Iops, 6);
        Assert.Equal(random.Iops * 4096, random.BytesPerSecond, 3);
        Assert.True(random.AverageLatencyMicroseconds > 0 && random.P99LatencyMicroseconds > 0 && random.CpuMicrosecondsPerIo > 0);
        // Four requests in flight, each on average this long: the run cannot be shorter than that allows.
        Assert.True(random.Elapsed.TotalMicroseconds >= random.AverageLatencyMicroseconds * random.Operations / 4 * 0.9);
        Assert.True(random.Scratch);
        Assert.Equal(TimeSpan.Zero, random.FlushElapsed); // reads end without a flush
        var write = target.Measure(CacheMode.Writeback, IoPattern.RandomWrite);
        Assert.InRange(write.FlushElapsed, TimeSpan.FromTicks(1), write.Elapsed);
        Assert.Equal(CacheMode.Writeback, random.CacheMode);

        var timed = PerformanceTarget.Open(dir.Path, Small with { Count = null, Duration = TimeSpan.FromMilliseconds(300) });
        using (timed)
        {
            var sequential = timed.Measure(CacheMode.None, IoPattern.SequentialRead);
            Assert.True(sequential.Elapsed >= TimeSpan.FromMilliseconds(300), $"ran {sequential.Elapsed}");
            Assert.True(sequential.Operations > 0);
            Assert.Equal(1 << 20, sequential.BlockSize);
        }
    }

    [Fact]
    public void TheScratchImageIsAFullyWrittenImageOfTheSizeAndFormatAskedForAndIsDeletedAfterwards()
    {
        using var dir = new TempFolder();
        var target = PerformanceTarget.Open(dir.Path, Small with { ScratchFormat = ImageFormat.Qcow2 });
        using (var disk = ImageChain.Open(target.Path))
        {
            Assert.Equal(ImageFormat.Qcow2, disk.Format);
            Assert.Equal(16 << 20, disk.Length);
            Assert.Equal(16L << 20, InspectImage.AllocatedBytes(disk.Driver)); // reads hit allocated data
        }
        Assert.StartsWith(".vdisk-perf.qcow2.vdisk-", Path.GetFileName(target.Path)); // a SIGKILL leaves a name the next run removes
        target.Measure(CacheMode.Unsafe, IoPattern.SequentialWrite);
        target.Dispose();
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void TheScratchImageIsDeletedWhenAMeasurementFails()
    {
        using var dir = new TempFolder();
        ImageChain.WritableStorageWrapper.Value = s => s.CacheMode == CacheMode.None ? new FaultInjectingStorage(s, writesBeforeFailure: 20) : s;
        try
        {
            using var target = PerformanceTarget.Open(dir.Path, Small);
            Assert.Throws<IOException>(() => target.Measure(CacheMode.None, IoPattern.RandomWrite));
        }
        finally
        {
            ImageChain.WritableStorageWrapper.Value = null;
        }
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));

        ImageChain.WritableStorageWrapper.Value = s => new FaultInjectingStorage(s, writesBeforeFailure: 5); // fails while filling
        try
        {
            Assert.Throws<IOException>(() => PerformanceTarget.Open(dir.Path, Small));
        }
        finally
        {
            ImageChain.WritableStorageWrapper.Value = null;
        }
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void ACancelledMeasurementDeletesTheScratchImageBeforeItReturns()
    {
        using var dir = new TempFolder();
        var target = PerformanceTarget.Open(dir.Path, Small with { Count = null, Duration = TimeSpan.FromMinutes(5) });
        using var cancel = new CancellationTokenSource();
        var progress = new SynchronousProgress(bytes => { if (bytes > 0) cancel.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() => target.Measure(CacheMode.None, IoPattern.RandomRead, progress, cancel.Token));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path)); // before Dispose

        using var cancelFill = new CancellationTokenSource();
        var fillProgress = new SynchronousProgress(bytes => { if (bytes >= 4 << 20) cancelFill.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() => PerformanceTarget.Open(dir.Path, Small, fillProgress, cancelFill.Token));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void AnExistingImageIsOnlyReadUnlessWritesAreAllowed()
    {
        using var dir = new TempFolder();
        string image = ExistingRaw(dir, out string hash);
        var e = Assert.Throws<VDiskException>(() => PerformanceTarget.Open(image, new PerformanceOptions { Format = ImageFormat.Raw }));
        Assert.Equal(VDiskErrorKind.HoldsData, e.Kind);
        Assert.Contains("RandomWrite", e.Message);

        var reads = new PerformanceOptions { Format = ImageFormat.Raw, Count = 500, QueueDepth = 4, Patterns = new[] { IoPattern.RandomRead, IoPattern.SequentialRead } };
        using (var target = PerformanceTarget.Open(image, reads))
        {
            Assert.False(target.IsScratch);
            foreach (var mode in Enum.GetValues<CacheMode>())
            {
                Assert.Equal(500, target.Measure(mode, IoPattern.RandomRead).Operations);
                Assert.Equal(500, target.Measure(mode, IoPattern.SequentialRead).Operations);
            }
            Assert.Equal(VDiskErrorKind.HoldsData, Assert.Throws<VDiskException>(() => target.Measure(CacheMode.None, IoPattern.SequentialWrite)).Kind);
        }
        Assert.Equal(hash, Sha256(image));
        Assert.Single(Directory.GetFileSystemEntries(dir.Path));

        using (var target = PerformanceTarget.Open(image, reads with { AllowWrites = true }))
            target.Measure(CacheMode.Writeback, IoPattern.RandomWrite);
        Assert.NotEqual(hash, Sha256(image));
        Assert.True(File.Exists(image));
    }

    [SkippableFact]
    public void AnImageAVirtualMachineHoldsIsRefused()
    {
        Qemu.Require();
        using var dir = new TempFolder();
        string image = ExistingRaw(dir, out string hash);
        using var vm = new QemuHolder(image, "raw");
        var e = Assert.Throws<VDiskException>(() => PerformanceTarget.Open(image, new PerformanceOptions { Format = ImageFormat.Raw, Patterns = new[] { IoPattern.RandomRead } }));
        Assert.Equal(VDiskErrorKind.InUse, e.Kind);
        Assert.Equal(hash, Sha256(image));
    }

    [Fact]
    public void BadOptionsAreRefusedBeforeAnythingIsCreated()
    {
        using var dir = new TempFolder();
        foreach (var options in new[] { Small with { QueueDepth = 0 }, Small with { Count = 0 }, Small with { ScratchSize = 4096 }, Small with { Patterns = Array.Empty<IoPattern>() } })
            Assert.Equal(VDiskErrorKind.InvalidArgument, Assert.Throws<VDiskException>(() => PerformanceTarget.Open(dir.Path, options)).Kind);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public void LatencyPercentilesAreWithinThreePercent()
    {
        var histogram = new LatencyHistogram();
        for (long v = 1; v <= 1_000_000; v++) histogram.Record(v);
        Assert.InRange(histogram.Percentile(0.99), 990_000, 990_000 * 1.03);
        Assert.InRange(histogram.Percentile(0.5), 500_000, 500_000 * 1.03);
        Assert.Equal(1_000_000, histogram.Count);
        for (long v = 0; v < 100_000_000_000; v = v * 3 + 1)
            Assert.InRange(LatencyHistogram.UpperBound(LatencyHistogram.Index(v)), v, Math.Max(v * 1.035, v + 1));
    }

    private static string ExistingRaw(TempFolder dir, out string hash)
    {
        string image = dir.File("data.raw");
        File.WriteAllBytes(image, Images.Pattern(8 << 20, 7));
        hash = Sha256(image);
        return image;
    }

    private static string Sha256(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    private sealed class SynchronousProgress(Action<long> report) : IProgress<long>
    {
        public void Report(long value) => report(value);
    }
}
