// The exports running in this process (Export-VDisk without -Wait): kept until Stop-VDiskExport or the end of the
// process, when each is stopped (listeners and connections closed, images flushed and closed, Unix sockets removed).
using System.Collections.Concurrent;

namespace VDisk.PowerShell.Commands;

/// <summary>The running exports of the session.</summary>
internal static class ExportRegistry
{
    private static readonly ConcurrentDictionary<int, VDiskExport> Running = new();
    private static int _hooked;

    /// <summary>Every export still running, oldest first.</summary>
    public static IReadOnlyList<VDiskExport> All => Running.Values.OrderBy(e => e.Id).ToList();

    /// <summary>Keeps <paramref name="export"/> running until stopped or the process ends.</summary>
    public static void Add(VDiskExport export)
    {
        if (Interlocked.Exchange(ref _hooked, 1) == 0) AppDomain.CurrentDomain.ProcessExit += (_, _) => StopAll();
        Running[export.Id] = export;
    }

    /// <summary>
    /// Stops an export (closing its image); false when it was stopped already. A second caller while the first is
    /// still stopping it waits until the listeners are closed, the socket file removed and the image closed: a signal
    /// handler that returns before that would let the process end with the socket file and the lock left behind.
    /// </summary>
    public static bool Stop(VDiskExport export)
    {
        Running.TryRemove(export.Id, out _);
        lock (export)
        {
            if (!export.Running) return false;
            try { export.Server.Dispose(); }
            finally { export.Running = false; }
        }
        return true;
    }

    private static void StopAll()
    {
        foreach (var export in All)
        {
            try { Stop(export); }
            catch (Exception e) when (e is IOException or AggregateException) { } // the process is ending anyway
        }
    }
}
