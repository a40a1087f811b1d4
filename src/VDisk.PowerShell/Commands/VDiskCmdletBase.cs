// The shared base of every VDisk cmdlet (DESIGN.md "Cmdlets"): provider path resolution (never the process
// directory), Ctrl+C and SIGTERM as a CancellationToken, per-image error records (an unexpected exception too, as
// an InternalError about that image), engine warnings, progress for long engine work, and libvirt domain names
// with wildcards.
using System.Collections.Concurrent;
using System.Management.Automation;
using System.Security;
using Microsoft.PowerShell.Commands;
using VDisk.Engine.Core;
using VDisk.Engine.Crypto;
using VDisk.Engine.Libvirt;

namespace VDisk.PowerShell.Commands;

/// <summary>Base class of the VDisk cmdlets.</summary>
public abstract class VDiskCmdletBase : PSCmdlet, IDisposable
{
    private const int ProgressActivityId = 1;
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(200);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Passphrase> _passphrases = new();
    private bool _terminating;

    /// <summary>The passphrases every image this cmdlet opens may be unlocked with (see <see cref="Attempt{T}"/>).</summary>
    protected IReadOnlyList<Passphrase> InputPassphrases { get; set; } = Array.Empty<Passphrase>();

    /// <summary>Cancelled when the user presses Ctrl+C, the pipeline is stopped, or the process gets SIGTERM.</summary>
    protected CancellationToken Cancellation => _stop.Token;

    /// <inheritdoc/>
    protected override void StopProcessing() => _stop.Cancel();

    /// <summary>Releases the cancellation source.</summary>
    public void Dispose()
    {
        foreach (var passphrase in _passphrases) passphrase.Dispose();
        _stop.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>
    /// The file-system path of <paramref name="path"/> taken literally (no wildcards) against the current
    /// PowerShell location; the file need not exist. Writes an error and returns null when it cannot be resolved.
    /// </summary>
    protected string? ResolveLiteralPath(string path)
    {
        var (full, error) = ResolveLiteral(path);
        if (error != null) WriteError(error);
        return full;
    }

    /// <summary>
    /// Like <see cref="ResolveLiteralPath"/> for a path every input depends on (a backing image, the image to
    /// compare with): a path that cannot be resolved stops the command with a terminating error.
    /// </summary>
    protected string ResolveLiteralPathOrStop(string path)
    {
        var (full, error) = ResolveLiteral(path);
        if (error != null) ThrowTerminatingError(error);
        return full!;
    }

    private (string? FullPath, ErrorRecord? Error) ResolveLiteral(string path)
    {
        if (path.Contains('\0')) return (null, VDiskErrors.NulInPath(path));
        try
        {
            string full = SessionState.Path.GetUnresolvedProviderPathFromPSPath(path, out ProviderInfo provider, out _);
            return IsFileSystem(provider) ? (full, null) : (null, VDiskErrors.NotFileSystemPath(path, provider));
        }
        catch (SessionStateException e)
        {
            return (null, VDiskErrors.FromException(e, path));
        }
    }

    /// <summary>
    /// The existing file-system paths that <paramref name="path"/> matches as a wildcard pattern. A pattern that
    /// matches nothing gives nothing; a path without wildcards that does not exist writes a FileNotFound error.
    /// </summary>
    protected IReadOnlyList<string> ResolveWildcardPath(string path)
    {
        if (path.Contains('\0'))
        {
            WriteError(VDiskErrors.NulInPath(path));
            return Array.Empty<string>();
        }
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
    /// (so the rest of the pipeline goes on) and give null; Ctrl+C (or SIGTERM) stops the pipeline. Any other exception
    /// is a bug: it becomes an InternalError record about the image, carrying the exception and its stack trace, and
    /// the pipeline goes on with the next image (only the runtime's fatal exceptions still stop it). Warnings the
    /// engine gives meanwhile are written once the work ends.
    /// </summary>
    protected T? Attempt<T>(string imagePath, Func<T> work) where T : class
    {
        var warnings = new ConcurrentQueue<string>();
        try
        {
            using (EngineWarnings.Listen(warnings.Enqueue))
            using (ImageKeys.Use(InputPassphrases))
                return work();
        }
        catch (OperationCanceledException) when (Stopping || _terminating)
        {
            throw new PipelineStoppedException();
        }
        catch (Exception e) when (e is not (PipelineStoppedException or ActionPreferenceStopException) && !IsFatal(e))
        {
            WriteError(VDiskErrors.FromException(e, imagePath) ?? VDiskErrors.Internal(e, imagePath));
            return null;
        }
        finally
        {
            while (warnings.TryDequeue(out var warning)) WriteWarning(warning);
        }
    }

    /// <summary>
    /// Runs read-only engine work on a worker thread and waits for it or for Ctrl+C, whichever comes first: a stop
    /// returns at once even if the work is stuck in a system call, and the work is cancelled. For work that writes,
    /// use <see cref="RunWithProgress{T}"/>, which waits for the work to clean up.
    /// </summary>
    protected T RunCancellable<T>(Func<CancellationToken, T> work)
    {
        var task = Task.Run(() => work(Cancellation));
        if (WaitHandle.WaitAny(new[] { ((IAsyncResult)task).AsyncWaitHandle, Cancellation.WaitHandle }) == 1 && !task.IsCompleted)
        {
            task.ContinueWith(t => t.Exception, TaskContinuationOptions.OnlyOnFaulted); // observed, not reported: the pipeline stopped
            throw new PipelineStoppedException();
        }
        return task.GetAwaiter().GetResult();
    }

    // Exceptions after which the process cannot be trusted to go on.
    private static bool IsFatal(Exception e) => e is OutOfMemoryException or AccessViolationException or System.Runtime.InteropServices.SEHException;

    /// <summary>
    /// Runs <paramref name="work"/> on a worker thread while this (pipeline) thread shows its progress (bytes,
    /// throughput, time left), then completes the progress record. Exceptions from the work are rethrown here; if
    /// this thread is interrupted the work is cancelled and awaited first, so no half-written output is left behind.
    /// SIGTERM during the work cancels it too, and the process ends once its cleanup is done (TerminationSignal).
    /// </summary>
    /// <param name="activity">The progress activity: the cmdlet's name.</param>
    /// <param name="status">What is being done, e.g. "Converting a.vmdk to a.qcow2".</param>
    /// <param name="totalBytes">The bytes to process, or 0 when the engine reports the total itself.</param>
    /// <param name="work">The engine call; it reports to the meter and stops when the token is cancelled.</param>
    /// <returns>What <paramref name="work"/> returned.</returns>
    protected T RunWithProgress<T>(string activity, string status, long totalBytes, Func<ProgressMeter, CancellationToken, T> work)
    {
        var meter = new ProgressMeter(totalBytes);
        var task = Task.Run(() => work(meter, Cancellation));
        using var terminate = new TerminationSignal(_stop, task);
        bool finished = false;
        try
        {
            while (!((IAsyncResult)task).AsyncWaitHandle.WaitOne(ProgressInterval))
                WriteProgress(meter.Record(ProgressActivityId, activity, status));
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
        var completed = meter.Record(ProgressActivityId, activity, status);
        completed.RecordType = ProgressRecordType.Completed;
        WriteProgress(completed);
        _terminating = terminate.Received;
        return task.GetAwaiter().GetResult();
    }

    /// <summary>
    /// True when <paramref name="typed"/> is relative to the current location as the user typed it (not rooted,
    /// not drive-qualified, not ~): a backing path typed that way is stored relative to the new image's folder.
    /// </summary>
    protected bool IsTypedRelative(string typed) => !typed.StartsWith('~') && !SessionState.Path.IsPSAbsolute(typed, out _);

    /// <summary>
    /// The InvalidArgument message for a -ClusterSizeBytes beyond what the engine takes (an int), naming the value as
    /// given rather than a clamped one; smaller invalid values are reported by the engine in the same words.
    /// </summary>
    protected static string ClusterSizeProblem(uint value) =>
        $"Cluster size {value} is invalid: it must be a power of two from 512 to 2097152 bytes.";

    /// <summary>
    /// The libvirt domains <paramref name="patterns"/> name: plain names as given, wildcards matched against every
    /// domain virsh lists (listed once). A listing that fails is written as an error and ends the enumeration.
    /// </summary>
    protected IEnumerable<string> ExpandDomainNames(Virsh virsh, IEnumerable<string> patterns)
    {
        IReadOnlyList<string>? all = null;
        foreach (string name in patterns)
        {
            if (!WildcardPattern.ContainsWildcardCharacters(name))
            {
                yield return name;
                continue;
            }
            all ??= Attempt(virsh.Uri, virsh.ListDomains);
            if (all is null) yield break;
            var pattern = new WildcardPattern(name);
            foreach (string match in all.Where(pattern.IsMatch)) yield return match;
        }
    }

    /// <summary>
    /// The passphrases given as SecureStrings (or PSCredentials) and as files (each file's first line), in that order;
    /// disposed with the cmdlet. A passphrase file that cannot be read stops the command, naming the file only.
    /// </summary>
    protected IReadOnlyList<Passphrase> ReadPassphrases(SecureString[]? secure, string[]? files)
    {
        var read = new List<Passphrase>();
        foreach (var s in secure ?? Array.Empty<SecureString>()) read.Add(PassphraseInput.FromSecureString(s));
        foreach (var file in files ?? Array.Empty<string>())
        {
            try { read.Add(Passphrase.FromFile(ResolveLiteralPathOrStop(file))); }
            catch (VDiskException e) { ThrowTerminatingError(VDiskErrors.FromException(e, file)!); }
        }
        _passphrases.AddRange(read);
        return read;
    }

    /// <summary>
    /// The one passphrase of a new encrypted image, from exactly one of <paramref name="secure"/> and <paramref name="file"/>;
    /// neither or both stops the command (PassphraseRequired, InvalidArgument).
    /// </summary>
    protected Passphrase NewPassphrase(SecureString? secure, string? file)
    {
        if (secure is null && file is null)
            ThrowTerminatingError(VDiskErrors.FromException(new VDiskException(VDiskErrorKind.PassphraseRequired, null,
                "-Encrypt needs the new passphrase: -Passphrase (a SecureString or PSCredential) or -PassphraseFile."), MyInvocation.MyCommand.Name)!);
        if (secure != null && file != null)
            ThrowTerminatingError(VDiskErrors.InvalidArgument("Give the new passphrase once: -Passphrase or -PassphraseFile, not both.", MyInvocation.MyCommand.Name));
        return ReadPassphrases(secure is null ? null : new[] { secure }, file is null ? null : new[] { file })[0];
    }

    /// <summary>True when the parameter was given on the command line or bound from the pipeline.</summary>
    protected bool IsBound(string parameter) => MyInvocation.BoundParameters.ContainsKey(parameter);

    private bool _yesToAll, _noToAll;

    /// <summary>
    /// Asks before the high-impact form of a medium-impact cmdlet (Resize-VDisk -Shrink, Set-VDisk -Unsafe) as a
    /// ConfirmImpact High cmdlet would ask, once: not with -Force, nor when -Confirm was given either way or
    /// $ConfirmPreference is below High (ShouldProcess has decided already), nor when it is None.
    /// </summary>
    protected bool ConfirmHighImpact(bool force, string query, string caption)
    {
        if (force || IsBound("Confirm")) return true;
        if (GetVariableValue("ConfirmPreference") is ConfirmImpact preference && preference != ConfirmImpact.High) return true;
        return ShouldContinue(query, caption, ref _yesToAll, ref _noToAll);
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
}
