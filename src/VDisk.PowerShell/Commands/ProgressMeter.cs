// Progress of long engine work as Write-Progress shows it: bytes done of the total, throughput in MiB/s and
// time left. The engine reports from its worker thread; the pipeline thread samples the newest values.
using System.Diagnostics;
using System.Globalization;
using System.Management.Automation;
using VDisk.Engine.Operations;

namespace VDisk.PowerShell.Commands;

/// <summary>Collects byte progress from engine work and describes it in a progress record.</summary>
public sealed class ProgressMeter : IProgress<long>, IProgress<OperationProgress>
{
    private const double BytesPerMiB = 1024 * 1024;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _done;
    private long _total;

    private volatile string? _detail;

    /// <summary>A meter for work of <paramref name="totalBytes"/> bytes (0: not known until the engine reports it).</summary>
    public ProgressMeter(long totalBytes) => _total = totalBytes;

    /// <summary>Bytes done so far, of the total given at construction.</summary>
    public void Report(long value) => Interlocked.Exchange(ref _done, value);

    /// <summary>Bytes done so far and the total, as the engine's operations report them.</summary>
    public void Report(OperationProgress value)
    {
        Interlocked.Exchange(ref _total, value.BytesTotal);
        Interlocked.Exchange(ref _done, value.BytesDone);
    }

    /// <summary>Extra words for the status line (a backup's bytes read, changed and written), set from any thread.</summary>
    public string? Detail
    {
        get => _detail;
        set => _detail = value;
    }

    /// <summary>
    /// A new progress record from the newest report: the percentage, the seconds left at the average rate so far,
    /// and a status such as "Converting a.vmdk to a.qcow2: 1.5 GiB of 20 GiB, 312.4 MiB/s".
    /// </summary>
    public ProgressRecord Record(int activityId, string activity, string status)
    {
        long done = Interlocked.Read(ref _done), total = Interlocked.Read(ref _total);
        double seconds = _clock.Elapsed.TotalSeconds;
        double bytesPerSecond = seconds > 0 ? done / seconds : 0;
        string of = total > 0 ? $" of {HumanSize.Format(total)}" : string.Empty;
        string rate = (bytesPerSecond / BytesPerMiB).ToString("0.#", CultureInfo.InvariantCulture);
        string detail = _detail is { } d ? $", {d}" : string.Empty;
        var record = new ProgressRecord(activityId, activity, $"{status}: {HumanSize.Format(done)}{of}, {rate} MiB/s{detail}");
        if (total <= 0) return record;
        record.PercentComplete = (int)Math.Clamp(done * 100 / total, 0, 100);
        if (bytesPerSecond > 0) record.SecondsRemaining = (int)Math.Min(int.MaxValue, Math.Max(0, total - done) / bytesPerSecond);
        return record;
    }
}
