// What Measure-VDiskPerformance measures on: given a folder, a scratch image made there (created, then written
// through so every read hits allocated data) and deleted when done, whatever happens; given an existing image, that
// image, read only unless writing into it is allowed. Each measurement opens the image in the cache mode asked for,
// through the engine's own storage stack (FileStorage: O_DIRECT for None and DirectSync, O_DSYNC for Writethrough and
// DirectSync, flushes ignored for Unsafe) and QEMU's image locks, so the numbers are what a VM with that mode sees.
// A cancelled measurement deletes the scratch image itself before it returns, so SIGTERM, which ends the process as
// soon as the work returns, leaves nothing; a SIGKILL leaves a hidden temporary file the next VDisk run removes.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>An image to measure: a scratch image (deleted on <see cref="Dispose"/>) or an existing one.</summary>
public sealed class PerformanceTarget : IDisposable
{
    private const int FillChunk = 1 << 20;
    private readonly PerformanceOptions _options;
    private readonly bool _writable;
    private int _deleted;

    private PerformanceTarget(string path, PerformanceOptions options, bool scratch)
    {
        Path = path;
        _options = options;
        IsScratch = scratch;
        _writable = scratch || options.AllowWrites;
    }

    /// <summary>The image measured.</summary>
    public string Path { get; }

    /// <summary>True when the image is a scratch image made for the measurement (and deleted afterwards).</summary>
    public bool IsScratch { get; }

    /// <summary>
    /// Prepares <paramref name="path"/>: a folder gets a scratch image of the options' size and format, written
    /// through (progress reports the bytes written); an existing image is checked to open. An existing image refuses
    /// write patterns with <see cref="VDiskErrorKind.HoldsData"/> unless <see cref="PerformanceOptions.AllowWrites"/>.
    /// </summary>
    public static PerformanceTarget Open(string path, PerformanceOptions options, IProgress<long>? progress = null, CancellationToken cancel = default)
    {
        options.Validate(path);
        if (Directory.Exists(path)) return CreateScratch(System.IO.Path.GetFullPath(path), options, progress, cancel);
        var target = new PerformanceTarget(System.IO.Path.GetFullPath(path), options, scratch: false);
        foreach (var pattern in options.Patterns)
            if (pattern.IsWrite() && !options.AllowWrites) throw target.HoldsData(pattern);
        target.OpenDisk(CacheMode.Writeback, writable: false).Dispose(); // it opens: found, an image, not locked by a writer
        return target;
    }

    /// <summary>
    /// Measures <paramref name="pattern"/> with the image opened in <paramref name="mode"/>; progress reports bytes
    /// moved. A cancelled measurement of a scratch image deletes it before throwing <see cref="OperationCanceledException"/>.
    /// </summary>
    public PerformanceResult Measure(CacheMode mode, IoPattern pattern, IProgress<long>? progress = null, CancellationToken cancel = default)
    {
        if (pattern.IsWrite() && !_writable) throw HoldsData(pattern);
        try
        {
            using var disk = OpenDisk(mode, pattern.IsWrite());
            return IoWorkload.Run(disk, mode, pattern, _options, IsScratch, progress, cancel);
        }
        catch (OperationCanceledException)
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Deletes the scratch image (an existing image is left as it is). Safe to call more than once.</summary>
    public void Dispose()
    {
        if (IsScratch && Interlocked.Exchange(ref _deleted, 1) == 0) File.Delete(Path);
    }

    private static PerformanceTarget CreateScratch(string folder, PerformanceOptions options, IProgress<long>? progress, CancellationToken cancel)
    {
        if (options.ScratchSize < 1 << 20 || options.ScratchSize > CreateImage.MaxSize)
            throw VDiskException.Invalid(folder, $"Scratch image size {options.ScratchSize} is out of range: it must be at least 1 MiB (one sequential request).");
        string name = $"vdisk-perf.{FormatProbe.Name(options.ScratchFormat)}";
        var target = new PerformanceTarget(TemporaryOutputs.NameFor(System.IO.Path.Combine(folder, name)), options, scratch: true);
        try
        {
            var create = new CreateOptions
            {
                Format = options.ScratchFormat,
                Size = options.ScratchSize,
                Preallocation = options.ScratchFormat == ImageFormat.Qcow2 ? Preallocation.Metadata : Preallocation.Off,
            };
            foreach (string warning in CreateImage.Run(target.Path, create, overwrite: false, cancel: cancel).Warnings) EngineWarnings.Warn(warning);
            target.Fill(progress, cancel);
            return target;
        }
        catch
        {
            target.Dispose();
            throw;
        }
    }

    // Writes the whole scratch image once with incompressible bytes, so reads hit allocated data on the host.
    private void Fill(IProgress<long>? progress, CancellationToken cancel)
    {
        using var disk = OpenDisk(CacheMode.Writeback, writable: true);
        using var buffer = AlignedBufferPool.Shared.Rent(FillChunk);
        new Random(20240610).NextBytes(buffer.Memory.Span);
        for (long offset = 0; offset < disk.Length; offset += FillChunk)
        {
            cancel.ThrowIfCancellationRequested();
            disk.Write(offset, buffer.Memory.Span[..(int)Math.Min(FillChunk, disk.Length - offset)]);
            progress?.Report(offset + FillChunk);
        }
        disk.Flush();
    }

    private VirtualDisk OpenDisk(CacheMode mode, bool writable) => ImageChain.Open(Path, new OpenOptions
    {
        Writable = writable,
        CacheMode = mode,
        BackingCacheMode = mode,
        Format = IsScratch ? _options.ScratchFormat : _options.Format,
    });

    private VDiskException HoldsData(IoPattern pattern) => new(VDiskErrorKind.HoldsData, Path,
        $"{Path} is an existing image: {pattern} would overwrite its data. Measure a folder (a scratch image is made there), " +
        "measure only the read patterns (-Pattern RandomRead, SequentialRead), or give -Force to write into it, destroying its content.");
}
