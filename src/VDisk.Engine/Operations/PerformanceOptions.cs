// The vocabulary of a storage performance measurement (Measure-VDiskPerformance, issue 10): the four I/O patterns
// fio and CrystalDiskMark report (random 4 KiB reads and writes, sequential 1 MiB reads and writes), the options of a
// run (queue depth, duration or count, the scratch image) and the result of one (cache mode, pattern) measurement.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>An I/O pattern a performance measurement runs.</summary>
public enum IoPattern
{
    /// <summary>4 KiB reads at random 4 KiB-aligned offsets.</summary>
    RandomRead,
    /// <summary>4 KiB writes at random 4 KiB-aligned offsets.</summary>
    RandomWrite,
    /// <summary>1 MiB reads, one after another from the start, wrapping at the end.</summary>
    SequentialRead,
    /// <summary>1 MiB writes, one after another from the start, wrapping at the end.</summary>
    SequentialWrite,
}

/// <summary>The properties that follow from an <see cref="IoPattern"/>.</summary>
public static class IoPatternExtensions
{
    /// <summary>Bytes per request: 4 KiB for the random patterns, 1 MiB for the sequential ones.</summary>
    public static int BlockSize(this IoPattern pattern) => pattern is IoPattern.RandomRead or IoPattern.RandomWrite ? 4096 : 1 << 20;

    /// <summary>True for the patterns that write.</summary>
    public static bool IsWrite(this IoPattern pattern) => pattern is IoPattern.RandomWrite or IoPattern.SequentialWrite;

    /// <summary>True for the patterns at random offsets.</summary>
    public static bool IsRandom(this IoPattern pattern) => pattern is IoPattern.RandomRead or IoPattern.RandomWrite;
}

/// <summary>Options of a performance measurement.</summary>
public sealed record PerformanceOptions
{
    /// <summary>The default queue depth: fio's and CrystalDiskMark's usual 32 (qemu-img bench's own default is 64).</summary>
    public const int DefaultQueueDepth = 32;

    /// <summary>The patterns that will be measured; an existing image refuses write patterns unless <see cref="AllowWrites"/>.</summary>
    public IReadOnlyList<IoPattern> Patterns { get; init; } = Enum.GetValues<IoPattern>();

    /// <summary>Requests kept in flight at once (1 to 256).</summary>
    public int QueueDepth { get; init; } = DefaultQueueDepth;

    /// <summary>How long each (cache mode, pattern) runs, when <see cref="Count"/> is not set.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Requests per (cache mode, pattern); when set, the run ends after this many instead of after <see cref="Duration"/>.</summary>
    public long? Count { get; init; }

    /// <summary>Virtual size of the scratch image made when the path is a folder.</summary>
    public long ScratchSize { get; init; } = 1L << 30;

    /// <summary>Format of the scratch image.</summary>
    public ImageFormat ScratchFormat { get; init; } = ImageFormat.Qcow2;

    /// <summary>Format of an existing image; null probes it.</summary>
    public ImageFormat? Format { get; init; }

    /// <summary>Allows write patterns on an existing image, destroying its data.</summary>
    public bool AllowWrites { get; init; }

    /// <summary>Checks every option; throws an InvalidArgument error naming the first that is out of range.</summary>
    internal void Validate(string path)
    {
        if (Patterns.Count == 0) throw VDiskException.Invalid(path, "At least one I/O pattern must be measured.");
        if (QueueDepth is < 1 or > 256) throw VDiskException.Invalid(path, $"Queue depth {QueueDepth} is out of range: it must be from 1 to 256.");
        if (Count is < 1) throw VDiskException.Invalid(path, $"Count {Count} is out of range: at least one request must be made.");
        if (Count is null && Duration <= TimeSpan.Zero) throw VDiskException.Invalid(path, $"Duration {Duration} is out of range: it must be positive.");
    }
}

/// <summary>What one (cache mode, pattern) measurement found.</summary>
public sealed record PerformanceResult
{
    /// <summary>The image measured (a scratch image is deleted by the time a caller looks).</summary>
    public required string Path { get; init; }
    /// <summary>True when the image was a scratch image made for the measurement.</summary>
    public bool Scratch { get; init; }
    /// <summary>The cache mode the image was opened with.</summary>
    public CacheMode CacheMode { get; init; }
    /// <summary>The pattern.</summary>
    public IoPattern Pattern { get; init; }
    /// <summary>Bytes per request.</summary>
    public int BlockSize { get; init; }
    /// <summary>Requests kept in flight at once.</summary>
    public int QueueDepth { get; init; }
    /// <summary>Requests completed.</summary>
    public long Operations { get; init; }
    /// <summary>Wall-clock time from the first request to the last completion (and, for writes, the closing flush).</summary>
    public TimeSpan Elapsed { get; init; }
    /// <summary>The part of <see cref="Elapsed"/> the closing flush of a write pattern took (zero for reads).</summary>
    public TimeSpan FlushElapsed { get; init; }
    /// <summary>Mean time one request took, in microseconds.</summary>
    public double AverageLatencyMicroseconds { get; init; }
    /// <summary>The time 99 % of requests stayed within, in microseconds (to within about 3 %).</summary>
    public double P99LatencyMicroseconds { get; init; }
    /// <summary>Process CPU time spent during the run, per request, in microseconds.</summary>
    public double CpuMicrosecondsPerIo { get; init; }

    /// <summary>Bytes moved.</summary>
    public long Bytes => Operations * BlockSize;
    /// <summary>Requests per second.</summary>
    public double Iops => Operations / Elapsed.TotalSeconds;
    /// <summary>Bytes per second.</summary>
    public double BytesPerSecond => Bytes / Elapsed.TotalSeconds;
}
