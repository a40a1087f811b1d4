// Measure-VDiskPerformance: what a VM with a given cache mode sees on given storage. For each folder or image, and
// each cache mode and pattern (random 4 KiB reads and writes, sequential 1 MiB reads and writes), one VDiskPerformance
// with IOPS, MB/s, latency and CPU time per I/O, measured through the engine's own storage stack (PerformanceTarget).
// A folder gets a scratch image, deleted at the end whatever happens; an existing image is only read unless -Force.
using System.Management.Automation;
using VDisk.Engine.Core;
using VDisk.Engine.Operations;
using VDisk.Engine.Storage;

namespace VDisk.PowerShell.Commands;

/// <summary>Measures the I/O performance of cache modes on a folder's storage or on an image.</summary>
[Cmdlet(VerbsDiagnostic.Measure, "VDiskPerformance", DefaultParameterSetName = PathSet, SupportsShouldProcess = true)]
[OutputType(typeof(VDiskPerformance))]
public sealed class MeasureVDiskPerformanceCommand : PathInputCmdletBase
{
    private const string Activity = "Measure-VDiskPerformance";

    /// <summary>The cache modes to measure, each with every pattern (default None, Writethrough, Writeback).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public CacheMode[] CacheMode { get; set; } = { Engine.Storage.CacheMode.None, Engine.Storage.CacheMode.Writethrough, Engine.Storage.CacheMode.Writeback };

    /// <summary>The patterns to measure (default all four; on an existing image without -Force, the two reads).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public IoPattern[] Pattern { get; set; } = Enum.GetValues<IoPattern>();

    /// <summary>Requests kept in flight at once (default 32).</summary>
    [Parameter]
    [ValidateRange(1, 256)]
    public int QueueDepth { get; set; } = PerformanceOptions.DefaultQueueDepth;

    /// <summary>How long each (mode, pattern) runs, in seconds (default 5); -Count replaces it.</summary>
    [Parameter]
    [ValidateRange(0.1, 86400.0)]
    public double DurationSeconds { get; set; } = 5;

    /// <summary>Requests per (mode, pattern); the run ends after this many instead of after -DurationSeconds.</summary>
    [Parameter]
    [ValidateRange(1L, long.MaxValue)]
    public long Count { get; set; }

    /// <summary>Virtual size of the scratch image made in a folder (default 1 GiB).</summary>
    [Parameter]
    [Alias("Size")]
    public ulong SizeBytes { get; set; } = 1UL << 30;

    /// <summary>Format of the scratch image (default Qcow2), or of an existing image (default: probed).</summary>
    [Parameter]
    public VDiskFormat Format { get; set; } = VDiskFormat.Qcow2;

    /// <summary>Allows write patterns on an existing image: they overwrite its data with random bytes.</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Checks the options before anything is created.</summary>
    protected override void BeginProcessing()
    {
        base.BeginProcessing();
        if (SizeBytes < 1 << 20 || SizeBytes > CreateImage.MaxSize)
            ThrowTerminatingError(VDiskErrors.InvalidArgument($"-SizeBytes {SizeBytes} is out of range: a scratch image holds at least 1 MiB (one sequential request).", null));
    }

    /// <summary>Measures every folder or image given.</summary>
    protected override void ProcessRecord()
    {
        foreach (var (full, _) in ResolveInputs()) MeasureOne(full);
    }

    private void MeasureOne(string fullPath)
    {
        bool folder = Directory.Exists(fullPath);
        var patterns = folder || Force || IsBound(nameof(Pattern)) ? Pattern.Distinct().ToArray() : Pattern.Where(p => !p.IsWrite()).ToArray();
        if (!folder && patterns.Length < Pattern.Length) WriteVerbose($"{fullPath} is an existing image: measuring the read patterns only (-Force writes into it too).");
        var options = new PerformanceOptions
        {
            Patterns = patterns,
            QueueDepth = QueueDepth,
            Duration = TimeSpan.FromSeconds(DurationSeconds),
            Count = IsBound(nameof(Count)) ? Count : null,
            ScratchSize = (long)SizeBytes,
            ScratchFormat = Format.ToEngine(),
            Format = IsBound(nameof(Format)) ? Format.ToEngine() : null,
            AllowWrites = Force,
        };
        if (folder && !ShouldProcess(fullPath, $"Create a {HumanSize.Format(options.ScratchSize)} {Format} scratch image, measure it and delete it")) return;
        if (!folder && Force && patterns.Any(p => p.IsWrite()) && !ShouldProcess(fullPath, "Write random data over the image, destroying its content")) return;

        string preparing = folder ? $"Writing a scratch image in {fullPath}" : $"Opening {fullPath}";
        var target = Attempt(fullPath, () => RunWithProgress(Activity, preparing, folder ? options.ScratchSize : 0,
            (meter, cancel) => PerformanceTarget.Open(fullPath, options, meter, cancel)));
        if (target is null) return;
        using (target)
        {
            foreach (var mode in CacheMode.Distinct())
            {
                foreach (var pattern in patterns)
                {
                    long total = options.Count is { } count ? count * pattern.BlockSize() : 0;
                    string status = $"{mode}, {pattern} at queue depth {QueueDepth}" + (options.Count is null ? $" for {DurationSeconds:0.#} s" : string.Empty);
                    var result = Attempt(target.Path, () => RunWithProgress(Activity, status, total,
                        (meter, cancel) => target.Measure(mode, pattern, meter, cancel)));
                    if (result is null) break; // this mode failed (a file system without O_DIRECT): go on with the next mode
                    WriteObject(VDiskPerformance.From(result));
                }
            }
        }
    }
}
