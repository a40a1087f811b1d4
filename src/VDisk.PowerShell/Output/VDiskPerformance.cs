// What Measure-VDiskPerformance writes: one object per (cache mode, pattern) with IOPS, MB/s, request latency and
// CPU time per I/O, measured through the engine's storage stack in that cache mode on the image or scratch image Path.
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;

namespace VDisk.PowerShell;

/// <summary>The performance one cache mode gave for one I/O pattern.</summary>
public sealed class VDiskPerformance
{
    /// <summary>The cache mode the image was opened with.</summary>
    public CacheMode Mode { get; init; }

    /// <summary>The I/O pattern.</summary>
    public IoPattern Pattern { get; init; }

    /// <summary>Requests completed per second.</summary>
    public double IOPS { get; init; }

    /// <summary>Throughput in MB/s (10^6 bytes per second, as fio and CrystalDiskMark count).</summary>
    public double MBps { get; init; }

    /// <summary>Mean time one request took, in microseconds.</summary>
    public double LatencyMicroseconds { get; init; }

    /// <summary>The time 99 % of requests stayed within, in microseconds (to within about 3 %).</summary>
    public double P99LatencyMicroseconds { get; init; }

    /// <summary>Process CPU time during the run divided by the requests completed, in microseconds.</summary>
    public double CpuMicrosecondsPerIo { get; init; }

    /// <summary>Requests kept in flight at once.</summary>
    public int QueueDepth { get; init; }

    /// <summary>Bytes per request (4096 or 1048576).</summary>
    public int BlockSizeBytes { get; init; }

    /// <summary>Requests completed.</summary>
    public long Operations { get; init; }

    /// <summary>Wall-clock time of the run, including the closing flush of a write pattern.</summary>
    public TimeSpan Duration { get; init; }

    /// <summary>The image measured; for a scratch image (deleted when the command ends), its path in the folder given.</summary>
    public string Path { get; init; } = string.Empty;

    /// <summary>True when the image was a scratch image made for the measurement.</summary>
    public bool Scratch { get; init; }

    internal static VDiskPerformance From(PerformanceResult r) => new()
    {
        Mode = r.CacheMode,
        Pattern = r.Pattern,
        IOPS = Math.Round(r.Iops, 1),
        MBps = Math.Round(r.BytesPerSecond / 1e6, 2),
        LatencyMicroseconds = Math.Round(r.AverageLatencyMicroseconds, 1),
        P99LatencyMicroseconds = Math.Round(r.P99LatencyMicroseconds, 1),
        CpuMicrosecondsPerIo = Math.Round(r.CpuMicrosecondsPerIo, 2),
        QueueDepth = r.QueueDepth,
        BlockSizeBytes = r.BlockSize,
        Operations = r.Operations,
        Duration = r.Elapsed,
        Path = r.Path,
        Scratch = r.Scratch,
    };
}
