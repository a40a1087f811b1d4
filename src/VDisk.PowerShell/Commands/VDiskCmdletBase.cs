// The shared base of every VDisk cmdlet (DESIGN.md "Cmdlets"): provider path resolution (never the process
// directory), Ctrl+C as a CancellationToken, per-image error records, and progress for long engine work.
using System.Management.Automation;
using Microsoft.PowerShell.Commands;

namespace VDisk.PowerShell.Commands;

/// <summary>Base class of the VDisk cmdlets.</summary>
public abstract class VDiskCmdletBase : PSCmdlet, IDisposable
{
    private const int ProgressActivityId = 1;
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(200);
    private readonly CancellationTokenSource _stop = new();

    /// <summary>Cancelled when the user presses Ctrl+C or the pipeline is stopped.</summary>
    protected CancellationToken Cancellation => _stop.Token;

    /// <inheritdoc/>
    protected override void StopProcessing() => _stop.Cancel();

    /// <summary>Releases the cancellation source.</summary>
    public void Dispose()
    {
        _stop.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>
    /// The file-system path of <paramref name="path"/> taken literally (no wildcards) against the current
    /// PowerShell location; the file need not exist. Writes an error and returns null when it cannot be resolved.
    /// </summary>
    protected string? ResolveLiteralPath(string path)
    {
        try
        {
            string full = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out ProviderInfo provider, out _);
            if (IsFileSystem(provider)) return full;
            WriteError(VDiskErrors.NotFileSystemPath(path, provider));
        }
        catch (SessionStateException e)
        {
            WriteError(VDiskErrors.FromException(e, path)!);
        }
        return null;
    }

    /// <summary>
    /// The existing file-system paths that <paramref name="path"/> matches as a wildcard pattern. A pattern that
    /// matches nothing gives nothing; a path without wildcards that does not exist writes a FileNotFound error.
    /// </summary>
    protected IReadOnlyList<string> ResolveWildcardPath(string path)
    {
        try
        {
            var matches = SessionState.Path.GetResolvedProviderPathFromPSPath(path, out ProviderInfo provider);
            if (IsFileSystem(provider)) return matches;
            WriteError(VDiskErrors.NotFileSystemPath(path, provider));
        }
        catch (SessionStateException e)
        {
            WriteError(VDiskErrors.FromException(e, FullPathOrAsTyped(path))!);
        }
        return Array.Empty<string>();
    }

    /// <summary>
    /// Runs engine work for one image. Engine and I/O failures become a non-terminating error about that image
    /// (so the rest of the pipeline goes on) and give null; Ctrl+C stops the pipeline.
    /// </summary>
    protected T? Attempt<T>(string imagePath, Func<T> work) where T : class
    {
        ErrorRecord? record = null;
        try
        {
            return work();
        }
        catch (OperationCanceledException) when (Stopping)
        {
            throw new PipelineStoppedException();
        }
        catch (Exception e) when ((record = VDiskErrors.FromException(e, imagePath)) != null)
        {
            WriteError(record);
            return null;
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> on a worker thread while this (pipeline) thread shows its byte progress, then
    /// completes the progress record. Exceptions from the work are rethrown here; if this thread is interrupted
    /// the work is cancelled and awaited first, so no half-written output is left behind.
    /// </summary>
    protected void RunWithProgress(string activity, string status, long? totalBytes, Action<IProgress<long>, CancellationToken> work)
    {
        var progress = new LatestProgress();
        var task = Task.Run(() => work(progress, Cancellation));
        var record = new ProgressRecord(ProgressActivityId, activity, status);
        bool finished = false;
        try
        {
            while (!((IAsyncResult)task).AsyncWaitHandle.WaitOne(ProgressInterval))
            {
                long done = progress.Latest;
                if (totalBytes > 0) record.PercentComplete = (int)Math.Clamp(done * 100 / totalBytes.Value, 0, 100);
                record.StatusDescription = $"{status}: {HumanSize.Format(done)}" + (totalBytes > 0 ? $" of {HumanSize.Format(totalBytes)}" : string.Empty);
                WriteProgress(record);
            }
            finished = true;
        }
        finally
        {
            if (!finished)
            {
                _stop.Cancel();
                ((IAsyncResult)task).AsyncWaitHandle.WaitOne();
            }
        }
        record.RecordType = ProgressRecordType.Completed;
        WriteProgress(record);
        task.GetAwaiter().GetResult();
    }

    // The target of an error about a path that did not resolve: its full path where one can be formed.
    private string FullPathOrAsTyped(string path)
    {
        try
        {
            return SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);
        }
        catch (SessionStateException)
        {
            return path;
        }
    }

    private static bool IsFileSystem(ProviderInfo provider) => provider.ImplementingType == typeof(FileSystemProvider);

    // Keeps only the newest value: the pipeline thread samples it, the worker never waits on it.
    private sealed class LatestProgress : IProgress<long>
    {
        private long _latest;

        public long Latest => Interlocked.Read(ref _latest);

        public void Report(long value) => Interlocked.Exchange(ref _latest, value);
    }
}
