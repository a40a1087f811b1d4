// One timed run of one I/O pattern on an open image (Measure-VDiskPerformance). Queue depth N means N worker threads,
// each keeping one request in flight through the engine's data path (synchronous pread/pwrite on the image's
// FileStorage, in the cache mode the image was opened with): N requests are outstanding at once, as QEMU's default
// aio=threads keeps them with its thread pool. Random patterns pick uniformly random aligned offsets; sequential ones
// take the next block from a shared counter, so N consecutive blocks are in flight. Reads of data runs go straight to
// the host file after the driver's mapping (IImageDriver.MapForIo: raw probes no holes, as QEMU's raw driver does not,
// which saves three system calls a request); holes, compressed and backing runs take VirtualDisk.Read. Writes into clusters the image has
// already allocated go straight to the host file after the driver's mapping (VirtualDisk.Write serialises every
// write behind one lock for allocation; a VM's QEMU does not), others take VirtualDisk.Write. A write run ends with
// one flush, inside the timed span (fio's end_fsync, qemu-img bench --flush-interval), which Unsafe turns into nothing.
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.ExceptionServices;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>Runs one pattern at one queue depth on an open image and measures it.</summary>
internal sealed class IoWorkload
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(50);
    private readonly VirtualDisk _disk;
    private readonly IoPattern _pattern;
    private readonly int _block;
    private readonly long _blocks;
    private readonly long _limit;
    private readonly LatencyHistogram[] _histograms;
    private readonly ConcurrentQueue<Exception> _errors = new();
    private readonly ManualResetEventSlim _go = new();
    private long _issued;
    private volatile bool _stop;

    private IoWorkload(VirtualDisk disk, IoPattern pattern, int depth, long? count)
    {
        _disk = disk;
        _pattern = pattern;
        _block = pattern.BlockSize();
        _blocks = disk.Length / _block;
        _limit = count ?? long.MaxValue;
        _histograms = new LatencyHistogram[depth];
    }

    /// <summary>
    /// Runs <paramref name="pattern"/> on <paramref name="disk"/> for the options' duration or count; progress reports
    /// bytes issued. Cancellation stops the workers, waits for them and throws <see cref="OperationCanceledException"/>.
    /// </summary>
    public static PerformanceResult Run(VirtualDisk disk, CacheMode mode, IoPattern pattern, PerformanceOptions options, bool scratch,
        IProgress<long>? progress, CancellationToken cancel)
    {
        var run = new IoWorkload(disk, pattern, options.QueueDepth, options.Count);
        if (run._blocks == 0)
            throw VDiskException.Invalid(disk.Path, $"{disk.Path}: the image ({disk.Length} bytes) is smaller than one {run._block}-byte request of {pattern}.");
        using (run._go)
        {
            var (elapsed, flush, cpu) = run.Measure(options, progress, cancel);
            var all = new LatencyHistogram();
            foreach (var histogram in run._histograms) all.Add(histogram);
            double microsecondsPerTick = 1e6 / Stopwatch.Frequency;
            return new PerformanceResult
            {
                Path = disk.Path,
                Scratch = scratch,
                CacheMode = mode,
                Pattern = pattern,
                BlockSize = run._block,
                QueueDepth = options.QueueDepth,
                Operations = all.Count,
                Elapsed = elapsed,
                FlushElapsed = flush,
                AverageLatencyMicroseconds = all.Count == 0 ? 0 : all.Sum * microsecondsPerTick / all.Count,
                P99LatencyMicroseconds = all.Percentile(0.99) * microsecondsPerTick,
                CpuMicrosecondsPerIo = all.Count == 0 ? 0 : cpu.TotalMicroseconds / all.Count,
            };
        }
    }

    // Starts the workers together, stops them at the deadline (or when the count is used up), flushes after writes.
    private (TimeSpan Elapsed, TimeSpan Flush, TimeSpan Cpu) Measure(PerformanceOptions options, IProgress<long>? progress, CancellationToken cancel)
    {
        using var finished = new CountdownEvent(_histograms.Length);
        for (int i = 0; i < _histograms.Length; i++)
        {
            int index = i;
            _histograms[i] = new LatencyHistogram();
            new Thread(() => Worker(index, finished)) { IsBackground = true, Name = $"VDisk I/O {index}" }.Start();
        }
        using var process = Process.GetCurrentProcess();
        var cpuStart = process.TotalProcessorTime;
        long start = Stopwatch.GetTimestamp();
        long deadline = options.Count is null ? start + (long)(options.Duration.TotalSeconds * Stopwatch.Frequency) : long.MaxValue;
        _go.Set();
        var waits = new[] { finished.WaitHandle, cancel.WaitHandle };
        while (WaitHandle.WaitAny(waits, PollInterval) == WaitHandle.WaitTimeout)
        {
            progress?.Report(Math.Min(Interlocked.Read(ref _issued), _limit) * _block);
            if (Stopwatch.GetTimestamp() >= deadline) _stop = true;
        }
        _stop = true;
        finished.Wait(); // the workers notice _stop after their current request
        if (_errors.TryDequeue(out var error)) ExceptionDispatchInfo.Capture(error).Throw(); // the worker's stack trace kept
        cancel.ThrowIfCancellationRequested();
        var flush = TimeSpan.Zero;
        if (_pattern.IsWrite())
        {
            long flushStart = Stopwatch.GetTimestamp();
            _disk.Flush();
            flush = Stopwatch.GetElapsedTime(flushStart);
        }
        var elapsed = Stopwatch.GetElapsedTime(start);
        process.Refresh();
        progress?.Report(_histograms.Sum(h => h.Count) * _block);
        return (elapsed, flush, process.TotalProcessorTime - cpuStart);
    }

    private void Worker(int index, CountdownEvent finished)
    {
        try
        {
            using var buffer = AlignedBufferPool.Shared.Rent(_block); // aligned: O_DIRECT needs no bounce copy
            var span = buffer.Memory.Span;
            var random = new Random(index * 7919 + 1);
            if (_pattern.IsWrite()) random.NextBytes(span);
            var histogram = _histograms[index];
            _go.Wait();
            while (!_stop)
            {
                long n = Interlocked.Increment(ref _issued) - 1;
                if (n >= _limit) break;
                long offset = (_pattern.IsRandom() ? random.NextInt64(_blocks) : n % _blocks) * _block;
                long start = Stopwatch.GetTimestamp();
                if (_pattern.IsWrite()) Write(offset, span);
                else Read(offset, span);
                histogram.Record(Stopwatch.GetTimestamp() - start);
            }
        }
        catch (Exception e)
        {
            _errors.Enqueue(e);
            _stop = true;
        }
        finally
        {
            finished.Signal();
        }
    }

    // A data run is read straight from the host file (MapForIo: no hole probing on raw, as in QEMU's raw driver).
    private void Read(long offset, Span<byte> buffer)
    {
        var map = _disk.Driver.MapForIo(offset, buffer.Length);
        if (map.Kind == ExtentKind.Data && map.Length >= buffer.Length) map.Storage!.ReadAt(map.HostOffset, buffer);
        else _disk.Read(offset, buffer);
    }

    // An allocated, writable cluster run is written in place without VirtualDisk.Write's allocation lock.
    private void Write(long offset, ReadOnlySpan<byte> data)
    {
        var map = _disk.Driver.MapForIo(offset, data.Length);
        if (map.Kind == ExtentKind.Data && map.Writable && map.Length >= data.Length) map.Storage!.WriteAt(map.HostOffset, data);
        else _disk.Write(offset, data);
    }
}
